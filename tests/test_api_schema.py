"""The API does what its schema says: schemathesis generates requests for every operation of /api/schema/, as an
admin, as a rater and signed out, and each answer must be no 5xx, have a status the schema documents for that
operation (status_code_conformance) and match the schema documented for it."""
import collections
import json

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from rest_framework.authtoken.models import Token
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

from tests.conftest import FIGURES
from tests.factories import AdminFactory, UserFactory, add_member, make_item, make_project

EXAMPLES = 4  # per operation and role: bounded, so the run stays a few minutes
CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance]
CASES: collections.Counter = collections.Counter()  # requests sent, by role


@pytest.fixture(scope="module", autouse=True)
def _figures(request):
    yield
    if CASES:
        by_role = ", ".join(f"{role} {n}" for role, n in CASES.items())
        request.config.stash.setdefault(FIGURES, []).append(
            f"schemathesis: {sum(CASES.values())} cases ({by_role}), {len(CHECKS)} checks on each answer")


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
    keys = {role: Token.objects.get_or_create(user=user)[0].key for role, user in (("admin", admin), ("rater", rater))}
    yield {role: {"Authorization": f"Token {key}"} for role, key in keys.items()} | {"signed out": {}}
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.mark.slow
@pytest.mark.parametrize("role", ["admin", "rater", "signed out"])
@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.filter_too_much, HealthCheck.data_too_large])
def test_every_operation_answers_as_documented(case, role, tokens):
    CASES[role] += 1
    case.call_and_validate(headers=tokens[role], checks=CHECKS)
