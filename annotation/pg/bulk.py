"""COPY: rows of Python values into a table, and the pieces for callers that build COPY's text format
themselves (the importer): ``sequences`` / ``next_ids`` draw primary keys, ``copy_text`` escapes a value,
``copy_rows`` sends the lines. The ORM's reference is ``annotation.bulk.bulk_insert``'s bulk_create."""
from __future__ import annotations

import json
from typing import Sequence

from django.db import connection, models


def copy_insert(model: type[models.Model], fields: Sequence[str], rows: Sequence[tuple],
                *, returning: bool = True) -> list[int]:
    """COPY ``rows`` (tuples in ``fields`` order, timestamps filled in) into ``model``'s table; the new
    primary keys in order (drawn from its sequence first) when ``returning``."""
    json_slots = [i for i, f in enumerate(fields) if isinstance(model._meta.get_field(f), models.JSONField)]
    columns = [model._meta.get_field(f).column for f in fields]
    with connection.cursor() as cursor:
        ids: list[int] = []
        if returning:
            (sequence,) = sequences(cursor, [model])
            ids = next_ids(cursor, [(sequence, len(rows))])[0]
            columns = ["id", *columns]
        sql = f'COPY "{model._meta.db_table}" ({", ".join(columns)}) FROM STDIN'
        with cursor.cursor.copy(sql) as copy:
            for n, row in enumerate(rows):
                values = list(row)
                for i in json_slots:
                    if values[i] is not None:
                        values[i] = json.dumps(values[i], ensure_ascii=False)
                copy.write_row([ids[n], *values] if returning else values)
    return ids


def sequences(cursor, models_: Sequence[type[models.Model]]) -> list[str]:
    """The sequence behind each model's ``id`` (looked up once: per row, the lookup costs more than nextval)."""
    cursor.execute(
        "SELECT " + ", ".join("pg_get_serial_sequence(%s, 'id')" for _ in models_),
        [m._meta.db_table for m in models_],
    )
    return list(cursor.fetchone())


def next_ids(cursor, wanted: Sequence[tuple[str, int]]) -> list[list[int]]:
    """``n`` new values from each ``(sequence, n)``, in one round trip. A sequence never hands out a value
    twice, so rows written with these ids cannot collide with rows that others insert meanwhile."""
    cursor.execute(
        "SELECT " + ", ".join("ARRAY(SELECT nextval(%s::regclass) FROM generate_series(1, %s))" for _ in wanted),
        [x for pair in wanted for x in pair],
    )
    return [list(ids) for ids in cursor.fetchone()]


def copy_text(value: str) -> str:
    """``value`` as a field of COPY's text format: backslash, tab, newline and carriage return escaped.
    (JSON text needs only its backslashes doubled: JSON escapes the control characters itself.)"""
    if "\\" in value or "\t" in value or "\n" in value or "\r" in value:
        return value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    return value


def copy_rows(cursor, model: type[models.Model], columns: Sequence[str], lines: list[str]) -> None:
    """COPY ``lines`` (each ending in a newline, fields in ``columns`` order) into ``model``'s table."""
    if not lines:
        return
    sql = f'COPY "{model._meta.db_table}" ({", ".join(columns)}) FROM STDIN'
    with cursor.copy(sql) as copy:
        copy.write("".join(lines).encode())
