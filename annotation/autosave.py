"""Autosave: a rater's unsent answer, kept server-side while they type (demonstrations, improved responses).

Only the rater who wrote it can read it back; a rater asking for an item they may not see gets "not found".
An autosave is refused once the rater has answered the item (their answer is then the record; edit it instead).
"""
from __future__ import annotations

import orjson
from django.conf import settings
from django.db import transaction

from .access import access_item
from .errors import Conflict, Invalid
from .models import Annotation, Autosave, Item

MAX_EXTRA_CHARS = 20_000  # beyond the longest text a payload may hold: comment, field names


def _check_payload(payload) -> dict:
    if not isinstance(payload, dict):
        raise Invalid("must be an object (the form's fields, as a submission would send them)", field="payload")
    try:
        size = len(orjson.dumps(payload))
    except (TypeError, orjson.JSONEncodeError) as exc:
        raise Invalid(f"is not plain JSON: {exc}", field="payload") from None
    limit = settings.PS_MAX_TEXT_CHARS * 4 + MAX_EXTRA_CHARS  # UTF-8 bytes of the longest text, and room
    if size > limit:
        raise Invalid(f"is {size} bytes as JSON; an autosave holds at most {limit}", field="payload")
    if _has_nul(payload):
        raise Invalid("holds a NUL character, which cannot be stored", field="payload")
    return payload


def _has_nul(value) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


@transaction.atomic
def autosave_store(*, rater, item_id, payload) -> Autosave:
    """Keep ``payload`` as the rater's unsent answer to the item (replacing the last one)."""
    item = access_item(rater, item_id)
    payload = _check_payload(payload)
    if Annotation.objects.filter(item=item, rater=rater).exists():
        raise Conflict("You have already answered this item; edit your answer instead.")
    autosave, _ = Autosave.objects.update_or_create(item=item, rater=rater, defaults={"payload": payload})
    return autosave


def autosave_get(*, rater, item: Item | int) -> Autosave | None:
    """The rater's own autosave of the item, if any (nobody else's, admins included)."""
    if not getattr(rater, "is_authenticated", False):
        return None
    return Autosave.objects.filter(item_id=getattr(item, "pk", item), rater=rater).first()


def autosave_clear(*, rater, item_id) -> int:
    """Remove the rater's autosave of an item (after their answer was stored); returns how many went."""
    return Autosave.objects.filter(item_id=item_id, rater=rater).delete()[0]
