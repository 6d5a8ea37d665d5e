"""The export and the queue keep plans that cannot turn quadratic when the planner has no statistics (autovacuum
off or behind, a project built by imports too small to ANALYZE). The tables are read through fresh copies that
were never analyzed, ahead of the originals on the search path; the plans are read with EXPLAIN."""
from contextlib import contextmanager
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.utils import timezone

from annotation import pg
from annotation.models import Annotation, Assignment, Item, ItemResponse, Prompt, Response
from tests.factories import UserFactory, add_member, make_item, make_project

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]

TABLES = (Prompt, Response, Item, ItemResponse, Annotation, Assignment, get_user_model())


@contextmanager
def without_statistics():
    """Unqualified table names resolve to never-analyzed copies (pg_temp comes first on the search path) with the
    same rows and indexes, dropped with the test's transaction."""
    with connection.cursor() as cursor:
        for model in TABLES:
            table = model._meta.db_table
            cursor.execute(f'CREATE TEMP TABLE "{table}" (LIKE public."{table}" INCLUDING ALL) ON COMMIT DROP')
            cursor.execute(f'INSERT INTO pg_temp."{table}" SELECT * FROM public."{table}"')
        cursor.execute("SELECT count(*) FROM pg_statistic s JOIN pg_class c ON c.oid = s.starelid "
                       "WHERE c.relnamespace = pg_my_temp_schema()")
        assert cursor.fetchone() == (0,)
        yield cursor


def plan(cursor, sql: str, params) -> str:
    cursor.execute("EXPLAIN " + sql, params)
    return "\n".join(row[0] for row in cursor.fetchall())


def seeded_project():
    project = make_project("pairwise", overlap=1)
    rater = add_member(project, UserFactory())
    for _ in range(3):
        make_item(project)
    return project, rater


def test_the_export_looks_up_each_items_responses_by_key_without_statistics():
    project, _rater = seeded_project()
    with without_statistics() as cursor:
        sql, params = pg.exports.item_query(project_id=project.pk, high_water=10**9, raw=False)
        text = plan(cursor, sql, params)
    # per item, never a scan (or a hash) of every response in the database
    assert "Seq Scan on annotation_response" not in text, text
    assert "Index Scan using annotation_response_pkey on annotation_response" in text, text


def test_a_lease_looks_up_its_responses_by_key_without_statistics():
    project, rater = seeded_project()
    now = timezone.now()
    params = {"project": project.pk, "rater": rater.pk, "gold": False, "other_kind": False, "now": now,
              "expires": now + timedelta(minutes=10)}
    with without_statistics() as cursor:
        text = plan(cursor, pg.queue._NEXT_SQL, params)
    assert "Seq Scan on annotation_response" not in text, text
    assert "Index Scan using annotation_response_pkey on annotation_response" in text, text
