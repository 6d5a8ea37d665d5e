"""Planner statistics refreshed after bulk writes, so plans are right at once rather than after autovacuum's
next pass (which a busy server, or one with autovacuum off, may be far from)."""
from __future__ import annotations

from django.db import connection

from ..models import Annotation, Item, ItemResponse, Prompt, Response

# The columns that queries filter or join on. Statistics for the others (prompt messages, response text,
# annotation payloads) took most of an ANALYZE's time and steer no plan.
IMPORT_COLUMNS = {
    Prompt: ("project_id", "external_id", "round"),
    Response: ("prompt_id", "model_name", "checkpoint_id"),
    Item: (),  # every column: all are small
    ItemResponse: (),
    Annotation: ("item_id", "rater_id", "assignment_id", "source", "created_at"),
}


def analyze(model, columns=()) -> None:
    column_list = f' ({", ".join(columns)})' if columns else ""
    with connection.cursor() as cursor:
        cursor.execute(f'ANALYZE "{model._meta.db_table}"{column_list}')


def warranted(model, written: int) -> bool:
    """Whether ``written`` new rows (with the changes counted since the table's last ANALYZE) leave the planner's
    picture of the table out of date, by autovacuum's own rule: 50 rows and a tenth of the table as last
    analyzed. A table never analyzed has no picture at all: without one, the planner took a project's 40,000
    open items for a dozen and read all of them on every lease (bench/exports/README.md)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT c.reltuples, COALESCE(s.n_mod_since_analyze, 0) FROM pg_class c "
                       "LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid WHERE c.oid = %s::regclass",
                       [model._meta.db_table])
        reltuples, changed = cursor.fetchone()
    return written + changed >= 50 + 0.1 * max(reltuples, 0)


def analyze_after_import(*, annotations: bool) -> None:
    """After a large import (outside a transaction: ANALYZE inside one would hold its locks to the end).
    Annotations only when the import made some."""
    if connection.in_atomic_block:
        return
    for model, columns in IMPORT_COLUMNS.items():
        if model is Annotation and not annotations:
            continue
        analyze(model, columns)
