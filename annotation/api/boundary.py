"""The text boundary at the HTTP door: every request's path, query string and form fields (middleware), and
every API body (DRF's parsers) pass ``annotation.boundary`` before a view sees them; bad input is a 400 that
names the field."""
from __future__ import annotations

import codecs

from django.conf import settings
from django.http import HttpResponse, JsonResponse
from rest_framework import parsers, serializers
from rest_framework.exceptions import ParseError

from annotation import boundary
from annotation.errors import Invalid

FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser through the boundary: NaN and Infinity refused, nesting past 64 levels, NUL, lone
    surrogates and over-long strings refused with the field named (never a RecursionError). Every body the API
    reads is an object: anything else is refused as the ``body``."""

    def parse(self, stream, media_type=None, parser_context=None):
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        try:
            text = codecs.getreader(encoding)(stream).read()
            data = boundary.loads(text)
        except (boundary.JSONError, UnicodeDecodeError) as exc:
            raise ParseError(f"JSON parse error - {exc}") from None
        return object_body(data)


def object_body(data):
    """``data`` if it is a JSON object; an Invalid naming the ``body`` otherwise."""
    if not isinstance(data, dict):
        raise Invalid(f"must be a JSON object, not {boundary.kind(data)}", field="body")
    return data


class JSONField(serializers.JSONField):
    """A serializer's JSON field through the boundary, also when a form sends it as JSON text (DRF's own field
    reads that text with ``json.loads``): nesting, NUL, lone surrogates and over-long strings are refused naming
    the field and where in it (``config.criteria[1]``)."""

    def to_internal_value(self, data):
        if isinstance(data, str) and (self.binary or getattr(data, "is_json_string", False)):
            try:
                data = boundary.loads(data, self.field_name)
            except boundary.JSONError:
                self.fail("invalid")
        else:
            boundary.check(data, self.field_name)
        return super().to_internal_value(data)


def _check_form(data) -> None:
    for key in data:
        boundary.check_text(key, key)
        for value in data.getlist(key):
            boundary.check_text(value, key)


class FormParser(parsers.FormParser):
    def parse(self, stream, media_type=None, parser_context=None):
        data = super().parse(stream, media_type, parser_context)
        _check_form(data)
        return data


class MultiPartParser(parsers.MultiPartParser):
    def parse(self, stream, media_type=None, parser_context=None):
        result = super().parse(stream, media_type, parser_context)
        _check_form(result.data)
        for key, upload in result.files.items():
            boundary.check_text(upload.name or "", key)
        return result


class TextBoundaryMiddleware:
    """The path, the query string and (for form posts) the form fields of every request, pages included.
    Before the views in MIDDLEWARE: the middleware above reads none of them."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        too_large = body_too_large(request)
        if too_large:
            # Refused unread: the connection closes after the answer, so the body's bytes are never taken
            # for the next request on a kept-alive connection.
            response = _answer(request, {"detail": too_large, "code": "too_large"}, 413)
            response["Connection"] = "close"
            return response
        try:
            boundary.check_text(request.path, "path", max_chars=2000)
            for key in request.GET:
                boundary.check_text(key, key)
                for value in request.GET.getlist(key):
                    boundary.check_text(value, key)
            if request.method == "POST" and request.content_type in FORM_TYPES:
                _check_form(request.POST)
        except Invalid as exc:
            return refusal(request, exc)
        return self.get_response(request)


def body_too_large(request) -> str:
    """Why the request's body is refused before it is read ("" when it is not): an upload (multipart) over
    ``PS_IMPORT_MAX_BYTES``, any other body over ``DATA_UPLOAD_MAX_MEMORY_SIZE``."""
    try:
        size = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return ""
    if request.content_type == "multipart/form-data":
        limit = settings.PS_IMPORT_MAX_BYTES
        if size > limit:
            return f"The upload is {size} bytes; an import takes at most {limit} (PS_IMPORT_MAX_BYTES)."
        return ""
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    if limit is not None and size > limit:
        return f"The body is {size} bytes; a request takes at most {limit} (DATA_UPLOAD_MAX_MEMORY_SIZE)."
    return ""


def refusal(request, exc: Invalid):
    """A 400 for ``exc``."""
    return _answer(request, exc.as_dict(), 400)


def _answer(request, body: dict, status: int):
    """The API's JSON error body, or a short plain page."""
    if request.path.startswith("/api/"):
        return JsonResponse(body, status=status)
    return HttpResponse(f"{body['detail']}\n", status=status, content_type="text/plain; charset=utf-8")
