"""Fast inserts for imports and benchmarks: ``bulk_insert`` takes Python values and returns the new ids.

bulk_create here; on PostgreSQL, COPY through ``annotation.pg.bulk``.
"""
from __future__ import annotations

from typing import Sequence

from django.db import models
from django.utils import timezone

from . import pg

_TIMESTAMP_FIELDS = ("created_at", "updated_at")


def _fill_timestamps(fields: Sequence[str], rows: Sequence[tuple]) -> list[tuple]:
    slots = [i for i, f in enumerate(fields) if f in _TIMESTAMP_FIELDS]
    if not slots:
        return list(rows)
    now = timezone.now()
    out = []
    for row in rows:
        row = list(row)
        for i in slots:
            if row[i] is None:
                row[i] = now
        out.append(tuple(row))
    return out


def bulk_insert(model: type[models.Model], fields: Sequence[str], rows: Sequence[tuple],
                *, returning: bool = True) -> list[int]:
    """Insert ``rows`` (tuples in ``fields`` order) and return the new primary keys in order (none when not
    ``returning``)."""
    if not rows:
        return []
    rows = _fill_timestamps(fields, rows)
    if pg.enabled():
        return pg.bulk.copy_insert(model, fields, rows, returning=returning)
    objs = [model(**dict(zip(fields, row))) for row in rows]
    model.objects.bulk_create(objs, batch_size=500)
    return [obj.pk for obj in objs] if returning else []
