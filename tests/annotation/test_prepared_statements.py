"""On PostgreSQL the rater hot path's statements are prepared once per connection, not parsed and planned
on every request (Django leaves psycopg's preparing off unless OPTIONS asks for it)."""
import pytest
from django.db import connection

from tests.helpers import TokenClient
from tests.factories import UserFactory, add_member, make_item, make_project

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]


def prepared_statements() -> list[tuple[str, int]]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement, generic_plans + custom_plans FROM pg_prepared_statements")
        return cursor.fetchall()


def test_next_and_submit_run_as_prepared_statements():
    project = make_project("pairwise", overlap=1)
    for _ in range(8):
        make_item(project)
    rater = add_member(project, UserFactory())
    client = TokenClient()
    client.force_authenticate(rater)
    for n in range(8):
        item = client.get(f"/api/v1/projects/{project.pk}/next/").json()["item"]
        answer = client.post(f"/api/v1/items/{item['id']}/annotations/",
                             {"payload": {"choice": "A", "strength": "slight"}, "idempotency_key": f"k{n}"},
                             format="json")
        assert answer.status_code == 201

    prepared = prepared_statements()
    for function in ("ps_next_lease", "ps_store_annotation"):
        runs = [count for statement, count in prepared if function in statement]
        assert runs and runs[0] >= 3, f"{function} is not run as a prepared statement: {prepared}"
