"""The export's reading on PostgreSQL: one COPY that streams the project's items in prompt order, each as
one JSON value built by PostgreSQL (item, prompt, responses, matching annotations), so the database and
Python work side by side. The ORM's reference is ``annotation.exports.rows._annotations_orm``.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import orjson
from django.contrib.auth import get_user_model
from django.db import connection
from psycopg.pq import TransactionStatus

from ..models import Annotation, Item, ItemResponse, Prompt, Response


@contextmanager
def _jit_off(cursor):
    """PostgreSQL's JIT compiler off for the session while the export's COPY runs (restored after).

    The COPY's estimated cost is far above the JIT thresholds, so PostgreSQL compiles it first: about 0.4 s
    before the first row, while Python waits, and no faster afterwards (the time goes to index lookups and
    JSON building, not to expressions).
    """
    cursor.execute("SHOW jit")
    (previous,) = cursor.fetchone()
    cursor.execute("SET jit = off")
    try:
        yield
    finally:
        # in a failed transaction the SET is undone with it, and no statement may run until then
        if cursor.connection.info.transaction_status != TransactionStatus.INERROR:
            cursor.execute("SELECT set_config('jit', %s, false)", [previous])


def item_values(*, project_id: int, high_water: int, raw: bool, since=None, until=None, raters=(), sources=(),
                gold: bool | None = None) -> Iterator[list]:
    """One list per item with matching annotations, in (prompt, item) order:
    [item id, prompt id, is gold, prompt external id, prompt messages,
     responses: [[id, text, model or "checkpoint:<id>" or "unknown", position], ...] (no order),
     annotations: [[id, rater username, source, payload, raw payload (when ``raw``), display order,
                    time spent, gold correct, created at, updated at (when ``raw``)], ...] (no order)].
    Annotations up to ``high_water`` and within the filters; ``gold`` None: gold items and others alike.
    Timestamps come as json_build_array writes them: ISO 8601 in the session's time zone (UTC under Django).
    The aggregates have no ORDER BY (a sort per item costs PostgreSQL about a fifth of its time).
    """
    sql, params = item_query(project_id=project_id, high_water=high_water, raw=raw, since=since, until=until,
                             raters=raters, sources=sources, gold=gold)
    sql = f"COPY ({sql}) TO STDOUT (FORMAT binary)"
    loads = orjson.loads
    with connection.cursor() as cursor, _jit_off(cursor.cursor):
        with cursor.cursor.copy(sql, params) as copy:
            for data in _binary_copy_values(copy):
                yield loads(data)


def item_query(*, project_id: int, high_water: int, raw: bool, since=None, until=None, raters=(), sources=(),
               gold: bool | None = None) -> tuple[str, list]:
    """The SELECT behind ``item_values`` and its parameters."""
    # The high-water mark is a filter, never an index condition ("+ 0"): on missing or stale statistics the
    # planner took it for selective and bitmap-ANDed every annotation id up to it for each item, which made
    # the export quadratic (bench/exports/stale_stats_bench.py); each item's annotations come from its index.
    # Each item's responses are looked up by primary key, one by one (the lateral subquery with OFFSET 0 is never
    # merged into a join): without statistics on the item tables the planner expected hundreds of responses per
    # item and hashed the whole response table for each item instead (552 s for 40,000 items, 0.8 s now).
    where, params = ["a.item_id = i.id", "a.id + 0 <= %s"], [high_water]
    if since:
        where.append("a.created_at >= %s")
        params.append(since)
    if until:
        where.append("a.created_at <= %s")
        params.append(until)
    if raters:
        where.append("u.username = ANY(%s)")
        params.append(list(raters))
    if sources:
        where.append("a.source = ANY(%s)")
        params.append(list(sources))
    item_where = ["i.project_id = %s"]
    params.append(project_id)
    if gold is not None:
        item_where.append("i.is_gold = %s")
        params.append(gold)
    sql = f"""
        SELECT json_build_array(
            i.id, i.prompt_id, i.is_gold, p.external_id, p.messages,
            (SELECT json_agg(json_build_array(r.id, r.text, CASE WHEN r.checkpoint_id IS NOT NULL
                                                  THEN 'checkpoint:' || r.checkpoint_id
                                                  ELSE COALESCE(NULLIF(r.model_name, ''), 'unknown') END,
                                              ir.position))
             FROM "{ItemResponse._meta.db_table}" ir
             CROSS JOIN LATERAL (SELECT r.id, r.text, r.checkpoint_id, r.model_name
                                 FROM "{Response._meta.db_table}" r WHERE r.id = ir.response_id OFFSET 0) r
             WHERE ir.item_id = i.id),
            anns.list)
        FROM "{Item._meta.db_table}" i
        JOIN "{Prompt._meta.db_table}" p ON p.id = i.prompt_id
        JOIN LATERAL (
            SELECT json_agg(json_build_array(
                       a.id, u.username, a.source, a.payload, {"a.raw_payload" if raw else "NULL"}, a.display_order,
                       a.time_spent_ms, a.gold_correct, a.created_at,
                       {"a.updated_at" if raw else "NULL"})) AS list
            FROM "{Annotation._meta.db_table}" a LEFT JOIN "{get_user_model()._meta.db_table}" u ON u.id = a.rater_id
            WHERE {" AND ".join(where)}
        ) anns ON anns.list IS NOT NULL
        WHERE {" AND ".join(item_where)}
        ORDER BY i.prompt_id, i.id"""
    return sql, params


def _binary_copy_values(copy) -> Iterator[memoryview]:
    """The value of each row of a one-column binary COPY: the bytes PostgreSQL sent (a json value: its text).

    Binary rather than text format, so PostgreSQL does not escape every backslash of the JSON for COPY and
    Python does not undo it. A row is a field count (2 bytes) and the field's length (4 bytes) before its
    bytes; the first row also carries the file header (11-byte signature, flags, extension length and
    extension), and a last message of 2 bytes (a count of -1) ends the data.
    """
    first = True
    for row in copy:
        if first:
            first = False
            row = row[19 + int.from_bytes(row[15:19], "big"):]
        if len(row) > 2:
            yield row[6:]
