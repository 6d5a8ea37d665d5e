"""The rater hot path, answered without the URL resolver and DRF.

``GET /api/v1/projects/{id}/next/`` and ``POST /api/v1/items/{id}/annotations/`` from token clients are
most of the API's traffic, and DRF's request wrapping, negotiation, serializer fields and the URL resolver
cost more Python than the two database statements each of them needs. This middleware comes after the security
headers, sessions, CSRF cookie and frame options in ``MIDDLEWARE`` and before the CSP, axes and the text
boundary, whose work on these calls it does itself (see the settings); for those two calls it does what their
DRF views do, with the same token authentication, access checks, services (``views.next_item`` and
``views.submit_annotation``), JSON renderer, headers and error bodies.

Anything it would answer differently goes on to the views untouched: another way of signing in (a
browser's session needs DRF's CSRF check), a token that does not authenticate, a query string, an Accept
other than JSON, a body that is not JSON. A JSON body goes to the same parser as the view's
(``annotation.submissions.parse_submission``). A test runs the API tests through both and compares their
answers.
"""
from __future__ import annotations

import functools
import re

from csp.utils import build_policy
from django.http import HttpResponse
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.renderers import JSONRenderer

from annotation import boundary
from annotation.api.authentication import TokenAuthentication
from annotation.api.boundary import body_too_large
from annotation.api.errors import error_body
from annotation.api.negotiation import JSON_ACCEPTS
from annotation.api.views import next_item, submit_annotation
from annotation.submissions import parse_submission

# Ids of up to 18 digits (a bigint); a longer one goes on to the text boundary and the views, which refuse it.
_NEXT = re.compile(r"/api/v1/projects/([0-9]{1,18})/next/")
_SUBMIT = re.compile(r"/api/v1/items/([0-9]{1,18})/annotations/")
_ALLOW = {_NEXT: "GET, HEAD, OPTIONS", _SUBMIT: "POST, OPTIONS"}
_JSON_BODIES = {"application/json", "application/json; charset=utf-8", "application/json;charset=utf-8"}
_RENDERER = JSONRenderer()
_TOKENS = TokenAuthentication()


class RaterHotPathMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        method = request.method
        route = _NEXT if method == "GET" else _SUBMIT if method == "POST" else None
        match = route.fullmatch(request.path_info) if route is not None else None
        plain = match is not None and _plain_json_call(request) and not body_too_large(request)
        user = _token_user(request) if plain else None
        if user is None:
            return self.get_response(request)
        if route is _NEXT:
            return _answer(route, next_item, user, match[1])
        read = _submission_body(request)
        if read is None:
            return self.get_response(request)
        try:
            return _answer(route, _submit, user, match[1], read[0])
        except _NotJSON:
            return self.get_response(request)


def _plain_json_call(request) -> bool:
    """No query string and JSON accepted: what the DRF view would negotiate without looking further."""
    meta = request.META
    return not meta.get("QUERY_STRING") and meta.get("HTTP_ACCEPT", "").strip() in JSON_ACCEPTS


def _token_user(request):
    """The user of a well-formed ``Authorization: Token <key>`` header that authenticates; None otherwise
    (DRF then answers as usual, with its 401 where one is due)."""
    header = request.META.get("HTTP_AUTHORIZATION", "")
    parts = header.split()
    if len(parts) != 2 or parts[0].lower() != "token" or not header.isascii():
        return None
    try:
        user, _token = _TOKENS.authenticate_credentials(parts[1])
    except AuthenticationFailed:
        return None
    request.user = user
    return user


def _submission_body(request):
    """The body of a JSON submission, in a 1-tuple; None sends anything else (a form) to DRF, whose parsers answer
    it. (Too large a body never gets here: ``__call__`` leaves it to the text boundary's 413.)"""
    if request.META.get("CONTENT_TYPE", "").lower() not in _JSON_BODIES:
        return None
    return (request.body,)


def _submit(user, item_id, body: bytes):
    """What SubmitView does with the body: the text boundary's JSON (as its parser reads it), then the one
    submission parser, then the service. A body that is not JSON goes to DRF (``NotJSON``), whose parser
    names the problem."""
    try:
        data = boundary.loads(body)
    except boundary.JSONError:
        raise _NotJSON from None
    return submit_annotation(user, item_id, parse_submission(data))


class _NotJSON(Exception):
    pass


def _answer(route, call, *args) -> HttpResponse:
    try:
        data, status = call(*args)
    except Exception as exc:  # noqa: BLE001 - only the errors DRF's exception handler knows are answered here
        known = error_body(exc)
        if known is None:
            raise
        data, status = known
    if data is None:
        response = HttpResponse(status=status)
        del response["Content-Type"]
    else:
        response = HttpResponse(_RENDERER.render(data), content_type="application/json", status=status)
    response["Allow"] = _ALLOW[route]
    response["Vary"] = "Accept"
    response["Content-Security-Policy"] = _csp()
    return response


@functools.cache
def _csp() -> str:
    """The CSP header django-csp's middleware gives every response (no nonce in JSON), built once."""
    return build_policy()
