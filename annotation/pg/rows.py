"""Model instances from hand-written SQL, for the few statements of the rater hot path.

The ORM builds each query anew on every call (about half a millisecond of Python per statement); the
hot path's statements are fixed strings instead, prepared once per connection on PostgreSQL. These
helpers turn their rows back into ordinary model instances, so everything downstream is unchanged.
"""
from __future__ import annotations

from functools import cache

from django.db import connection
from django.db.models.base import ModelState


@cache
def _layout(model) -> tuple[list[str], list[tuple[int, object]], int]:
    fields = model._meta.concrete_fields
    attnames = [f.attname for f in fields]
    converters = [(i, f) for i, f in enumerate(fields) if hasattr(f, "from_db_value")]
    return attnames, converters, attnames.index(model._meta.pk.attname)


def columns(model, alias: str = "") -> str:
    """The model's columns (qualified by ``alias`` when given), in the order ``build`` reads them."""
    prefix = f"{alias}." if alias else ""
    return ", ".join(f'{prefix}"{f.column}"' for f in model._meta.concrete_fields)


def width(model) -> int:
    return len(model._meta.concrete_fields)


def build(model, values):
    """An instance of ``model`` from all its columns' values (None when the primary key is NULL: no row).

    Like ``Model.from_db`` with every field loaded, without running ``Model.__init__`` field by field
    (a third of the hot path's model cost); none of these models has init signal receivers.
    """
    attnames, converters, pk = _layout(model)
    if values[pk] is None:
        return None
    if converters:
        values = list(values)
        for i, field in converters:
            if values[i] is not None:
                values[i] = field.from_db_value(values[i], None, connection)
    instance = model.__new__(model)
    instance.__dict__.update(zip(attnames, values))
    state = instance._state = ModelState()
    state.adding, state.db = False, connection.alias
    return instance


def split(row, *models) -> list:
    """A joined row cut into one instance per model, in the order their columns were selected."""
    out, start = [], 0
    for model in models:
        n = width(model)
        out.append(build(model, row[start:start + n]))
        start += n
    return out


def fetch_one(sql: str, params):
    """The first row of ``sql`` (None when there is none)."""
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()
