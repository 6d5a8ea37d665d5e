"""The one parser of a submission (and of an edit): every entry point hands it what the client sent.

The API's serializer, the hot-path middleware, the HTML form view and the services' keyword helpers all call
``parse_submission``; nothing else checks these fields. The payload's meaning depends on the project's mode
and is resolved by ``annotation.payloads.resolve_payload`` once the item is known.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .boundary import whole_number
from .errors import Invalid

MAX_TIME_SPENT_MS = 86_400_000  # one day
MAX_IDEMPOTENCY_KEY_CHARS = 100


@dataclass(frozen=True, slots=True)
class Submission:
    payload: dict
    idempotency_key: str = ""  # "" for an edit
    time_spent_ms: int | None = None


def parse_submission(data: Any, *, edit: bool = False) -> Submission:
    """A submission from a request body (a JSON object, or a form's fields): ``payload`` (an object, required),
    ``idempotency_key`` (up to 100 characters, surrounding spaces dropped; not read for an ``edit``) and
    ``time_spent_ms`` (whole milliseconds, up to a day; a string of digits from a form counts). Other fields
    are ignored. Raises Invalid naming the field."""
    if not isinstance(data, dict):
        raise Invalid(f"must be an object of payload, idempotency_key and time_spent_ms, not {_kind(data)}",
                      field="body")
    payload = data.get("payload")
    if payload is None:
        raise Invalid("is required", field="payload")
    if not isinstance(payload, dict):
        raise Invalid(f"must be an object, not {_kind(payload)}", field="payload")
    return Submission(payload, "" if edit else _idempotency_key(data.get("idempotency_key")),
                      _time_spent_ms(data.get("time_spent_ms")))


def _idempotency_key(value) -> str:
    if value is None:
        return ""
    if not isinstance(value, str) or len(value := value.strip()) > MAX_IDEMPOTENCY_KEY_CHARS:
        raise Invalid(f"must be a string of at most {MAX_IDEMPOTENCY_KEY_CHARS} characters", field="idempotency_key")
    return value


def _time_spent_ms(value) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, str) and whole_number(value, max_digits=12) is not None:
        value = whole_number(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_TIME_SPENT_MS:
        raise Invalid("must be a whole number of milliseconds from 0 to 86400000 (a day)", field="time_spent_ms")
    return value


def _kind(value) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "true or false", type(None): "null"}.get(
        type(value), "a number")
