"""What the API's schema (/api/schema/) says each operation answers besides its success: every status code the
code returns, so a client (and the schemathesis test) can rely on the list.

``AutoSchema`` adds to each operation the answers that come from the machinery around every view:

- 400 bad input, named by its field (the text boundary refuses a path or query string on any operation);
- 401 not signed in (no credentials, or a token that does not authenticate);
- 403 not allowed (admins only, a paused rater, another rater's object, a session write without its CSRF token),
  except where a view says it never forbids (``never_forbids``: methods any signed-in user may call);
- 404 not found, or not yours to see, on operations with an id in their path;
- 413 a body over DATA_UPLOAD_MAX_MEMORY_SIZE (an upload over PS_IMPORT_MAX_BYTES), on operations that take one;
- 503 the database is not answering (a restart), with Retry-After.

What only some operations answer (409 conflicts, 404 for an id in the body) each view declares with
``extend_schema(responses=...)``, using the responses below.
"""
from __future__ import annotations

from drf_spectacular import openapi
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers


class ErrorSerializer(serializers.Serializer):
    detail = serializers.CharField()
    code = serializers.CharField(required=False, help_text="Ours: invalid, not_found, forbidden, conflict... (DRF's own refusals have none).")
    field = serializers.CharField(required=False, help_text="The input at fault.")
    errors = serializers.DictField(child=serializers.ListField(child=serializers.CharField()), required=False)


def error(description: str) -> OpenApiResponse:
    return OpenApiResponse(ErrorSerializer, description=description)


BAD_INPUT = OpenApiResponse(description="Bad input, named by its field: {detail, code, field, errors} from our checks, "
                                        "{field: [message]} from a serializer; also a path or query string that holds "
                                        "what may not enter (NUL, more than 2,000 characters).")
NOT_SIGNED_IN = error("Not signed in: no credentials, or a token that does not authenticate.")
FORBIDDEN = error("Not allowed: admins only, a paused rater, another rater's object, or a session write without "
                  "its CSRF token.")
NOT_FOUND = error("Not found, or not yours to see (a project you are not a member of, another rater's object).")
TOO_LARGE = error("The body is over DATA_UPLOAD_MAX_MEMORY_SIZE (an upload: over PS_IMPORT_MAX_BYTES); the "
                  "connection is closed.")
DATABASE_AWAY = error("The database is not answering (a restart?); try again after Retry-After seconds.")


class AutoSchema(openapi.AutoSchema):
    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        if direction != "response":
            return responses
        method = self.method.lower()
        defaults = {"400": BAD_INPUT, "401": NOT_SIGNED_IN}
        if method not in getattr(self.view, "never_forbids", ()):
            defaults["403"] = FORBIDDEN
        if "{" in self.path:
            defaults["404"] = NOT_FOUND
        if self._get_request_body() is not None:
            defaults["413"] = TOO_LARGE
        defaults["503"] = DATABASE_AWAY
        for code, response in defaults.items():
            if code not in responses:
                responses[code] = self._get_response_for_code(response, code, direction=direction)
        return responses
