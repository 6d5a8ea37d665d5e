"""A rater's next lease: ps_next_lease() (``functions``) with its item, prompt and responses, in one statement.

The ORM's reference is ``annotation.services.queue_next``.
"""
from __future__ import annotations

from django.db import connection

from ..models import Assignment, Item, ItemResponse, Prompt, Response
from .rows import columns, fetch_one, split

_ITEM_RESPONSE, _RESPONSE = ItemResponse._meta.db_table, Response._meta.db_table


def _responses_of(item: str) -> str:
    """Two columns: the response ids and texts of ``item`` (an SQL expression), in canonical order.

    Each text is looked up by primary key (a scalar subquery, never merged into a join): as a join, without
    statistics on the item tables the planner expected hundreds of responses per item and hashed the whole
    response table on every lease."""
    return f"""ARRAY(SELECT ir.response_id FROM "{_ITEM_RESPONSE}" ir WHERE ir.item_id = {item}
                      ORDER BY ir.position),
       ARRAY(SELECT (SELECT r.text FROM "{_RESPONSE}" r WHERE r.id = ir.response_id) FROM "{_ITEM_RESPONSE}" ir
             WHERE ir.item_id = {item} ORDER BY ir.position)"""


def _next_sql(commit: str) -> str:
    """The rater's live lease, or a new one on the best open item, with its item, prompt and responses;
    then one column, ``commit``, that sets how the statement's transaction commits."""
    return f"""
SELECT {columns(Assignment, "a")}, {columns(Item, "i")}, {columns(Prompt, "p")}, {_responses_of("a.item_id")},
       {commit}
FROM ps_next_lease(%(project)s, %(rater)s, %(gold)s, %(other_kind)s, %(now)s, %(expires)s) a
JOIN "{Item._meta.db_table}" i ON i.id = a.item_id JOIN "{Prompt._meta.db_table}" p ON p.id = i.prompt_id
"""


# Inside a caller's transaction: its commit is the caller's.
_NEXT_SQL = _next_sql("NULL")
# As a transaction of its own, whose commit does not wait for the WAL flush. A lease is a reservation, not
# data: if the server crashed within the flush delay (wal_writer_delay, 200 ms), the lease is gone and its
# item is open again, and the rater's submit takes the full path, which accepts it while the item still
# needs annotations (exact overlap holds either way). Annotations always wait.
_NEXT_SQL_OWN_TRANSACTION = _next_sql("set_config('synchronous_commit', 'off', true)")


def next_lease(*, project_id: int, rater_id: int, gold: bool, other_kind: bool, now, expires) -> Assignment | None:
    """The rater's live lease or a new one (gold items first when ``gold``, then the other kind when
    ``other_kind``), with ``.item`` (and its ``.prompt``) and ``.response_texts`` (id -> text) attached.
    Outside a transaction it is one statement in a transaction of its own: no BEGIN / COMMIT round trips."""
    sql = _NEXT_SQL if connection.in_atomic_block else _NEXT_SQL_OWN_TRANSACTION
    row = fetch_one(sql, {"project": project_id, "rater": rater_id, "gold": gold, "other_kind": other_kind,
                          "now": now, "expires": expires})
    if row is None:
        return None
    assignment, item, prompt = split(row[:-3], Assignment, Item, Prompt)
    item.prompt, assignment.item = prompt, item
    assignment.response_texts = dict(zip(row[-3], row[-2]))
    return assignment


def seed_shuffles(seed: float) -> None:
    """Seed this connection's random() (the display order ps_next_lease draws), ``seed`` in [-1, 1]."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT setseed(%s)", [seed])
