"""A submission: the item's state read in one statement, and the annotation stored by ps_store_annotation().

The ORM's reference is ``annotation.services._submission_store_locked`` (with ``access.access_item``).
"""
from __future__ import annotations

import json

from ..models import Annotation, Assignment, Item, Membership, Project
from .rows import columns, fetch_one, split

_ASSIGNMENT, _ITEM = Assignment._meta.db_table, Item._meta.db_table

# The other raters' live leases on the item.
_OTHERS_LIVE = f"""(SELECT count(*) FROM "{_ASSIGNMENT}" o
     WHERE o.item_id = %(item)s AND o.status = 'leased' AND o.expires_at > %(now)s AND o.rater_id <> %(rater)s)"""
# The rater's assignment of the item, if any.
_ASSIGNMENT_FROM = f"""FROM (SELECT 1) one
    LEFT JOIN "{_ASSIGNMENT}" a ON a.item_id = %(item)s AND a.rater_id = %(rater)s"""


def _item_state_sql(*, lock: bool) -> str:
    """The item with its project, the rater's membership (if any), the rater's assignment (if any) and, when
    ``lock``, the other raters' live leases, taking the item's row lock. Locked, they are read on the
    statement's snapshot, taken before the lock was granted: a live lease seen there is still live (only its
    rater changes it), but without one ``assignment_state`` reads them again. Unlocked, it is what a
    submission under a live lease needs to check and resolve the payload before ``store`` writes it; it
    does not need the other raters' leases, so it does not count them."""
    return f"""
SELECT {columns(Item, "i")}, {columns(Project, "p")}, {columns(Membership, "m")}, {columns(Assignment, "a")},
    {_OTHERS_LIVE if lock else "NULL"}
{_ASSIGNMENT_FROM}
    JOIN "{_ITEM}" i ON i.id = %(item)s JOIN "{Project._meta.db_table}" p ON p.id = i.project_id
    LEFT JOIN "{Membership._meta.db_table}" m ON m.project_id = i.project_id AND m.user_id = %(rater)s
{"FOR UPDATE OF i" if lock else ""}"""


_LOCK_ITEM_SQL = _item_state_sql(lock=True)
_READ_ITEM_SQL = _item_state_sql(lock=False)
_ASSIGNMENT_SQL = f"SELECT {columns(Assignment, 'a')}, {_OTHERS_LIVE}\n{_ASSIGNMENT_FROM}"

_STORE_SQL = f"""
SELECT {columns(Annotation, "n")} FROM ps_store_annotation(
    %(item)s, %(rater)s, %(assignment)s, %(payload)s::jsonb, %(raw_payload)s::jsonb, %(order)s::jsonb,
    %(time_spent_ms)s, %(gold_correct)s, %(key)s, %(now)s) n
"""


def item_state(item_id: int, rater_id: int, now, *, lock: bool):
    """(item, project, membership or None, assignment or None, other raters' live leases or None when not
    ``lock``), or None when there is no such item. Who may touch it is for ``access.admit_to_item``."""
    row = fetch_one(_LOCK_ITEM_SQL if lock else _READ_ITEM_SQL, {"item": item_id, "rater": rater_id, "now": now})
    if row is None:
        return None
    return (*split(row[:-1], Item, Project, Membership, Assignment), row[-1])


def assignment_state(item_id: int, rater_id: int, now) -> tuple[Assignment | None, int]:
    """The rater's assignment of the item (None without one) and the other raters' live leases, read now."""
    row = fetch_one(_ASSIGNMENT_SQL, {"item": item_id, "rater": rater_id, "now": now})
    (assignment,) = split(row[:-1], Assignment)
    return assignment, row[-1]


def store(*, item_id: int, rater_id: int, assignment: Assignment, payload: dict, raw_payload: dict, key: str,
          time_spent_ms: int | None, gold_correct: bool | None, now) -> Annotation | None:
    """The annotation, stored under the rater's live ``assignment``; None when that lease is no longer the
    live one, or the rater already has an annotation of the item or with this key."""
    row = fetch_one(_STORE_SQL, {
        "item": item_id, "rater": rater_id, "assignment": assignment.pk, "payload": json.dumps(payload),
        "raw_payload": json.dumps(raw_payload), "order": json.dumps(assignment.display_order),
        "time_spent_ms": time_spent_ms, "key": key, "now": now, "gold_correct": gold_correct,
    })
    return None if row is None else split(row, Annotation)[0]
