"""The API does what its schema says: schemathesis generates requests for every operation of /api/schema/, as an
admin and as a rater, and each answer must be no 5xx and, where the schema documents its status, match it."""
import json

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from rest_framework.authtoken.models import Token
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from tests.factories import AdminFactory, UserFactory, add_member, make_item, make_project

EXAMPLES = 4  # per operation and role: bounded, so the run stays a few minutes


def _schema():
    from django.core.wsgi import get_wsgi_application
    from drf_spectacular.generators import SchemaGenerator

    document = json.loads(json.dumps(SchemaGenerator().get_schema(request=None, public=True), default=str))
    loaded = schemathesis.openapi.from_dict(document)
    loaded.app = get_wsgi_application()
    return loaded


schema = _schema()


@pytest.fixture
def tokens(db):
    """An admin and a rater, a project of each mode the rater is in, with items: ids 1.. exist to be found.
    Requests go straight to the WSGI app, so the end of each must not close the test's connection (as
    Django's test client keeps it)."""
    from django.core.signals import request_finished, request_started
    from django.db import close_old_connections

    admin, rater = AdminFactory(), UserFactory()
    for mode in ("pairwise", "rating", "ranking"):
        project = make_project(mode)
        add_member(project, rater)
        make_item(project)
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield {role: Token.objects.get_or_create(user=user)[0].key for role, user in (("admin", admin), ("rater", rater))}
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.mark.slow
@pytest.mark.parametrize("role", ["admin", "rater"])
@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.filter_too_much, HealthCheck.data_too_large])
def test_every_operation_answers_as_documented(case, role, tokens):
    case.call_and_validate(headers={"Authorization": f"Token {tokens[role]}"},
                           checks=[not_a_server_error, response_schema_conformance])
