"""The quality report's annotation rows: plain SQL, comments left out, JSON decoded with orjson (the ORM's
converters cost more than everything else in the report at 100k items). The ORM's reference is
``annotation.quality._annotation_rows``."""
from __future__ import annotations

from typing import Iterator

import orjson
from django.db import connection
from psycopg.types.json import set_json_loads

from ..models import Annotation, Item

_SQL = f"""SELECT a.item_id, a.rater_id, a.payload - 'comment', (a.display_order->>0)::bigint, a.time_spent_ms
           FROM "{Annotation._meta.db_table}" a JOIN "{Item._meta.db_table}" i ON i.id = a.item_id
           WHERE i.project_id = %s AND a.rater_id IS NOT NULL AND a.source <> 'judge'"""


def annotation_rows(project_id: int) -> Iterator[tuple]:
    """(item, rater, payload, first response shown, time spent) of the project's annotations by people."""
    with connection.cursor() as cursor:
        set_json_loads(orjson.loads, cursor.cursor)
        cursor.execute(_SQL, [project_id])
        while rows := cursor.fetchmany(20_000):
            yield from rows
