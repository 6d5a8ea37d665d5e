import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from tests.factories import UserFactory, add_member, make_item, make_project


@pytest.fixture
def rater(db):
    return UserFactory()


@pytest.fixture
def project(db):
    project = make_project("pairwise", overlap=2)
    for _ in range(3):
        make_item(project)
    return project


@pytest.fixture
def member(project, rater):
    return add_member(project, rater)


@pytest.fixture(params=["sql", "orm"])
def both_paths(request, monkeypatch):
    """Run a test twice: through PostgreSQL's SQL functions and through the ORM path that other databases
    (the SQLite default) take."""
    if request.param == "orm":
        from annotation import services

        monkeypatch.setattr(services, "_on_postgresql", lambda: False)
    return request.param



class TokenClient(APIClient):
    """An APIClient whose ``force_authenticate(user)`` signs in with the user's API token instead, as
    scripts and real raters' tools do: next item and submit are then answered by ``annotation.api.hotpath``
    rather than by the DRF views."""

    def force_authenticate(self, user=None, token=None):
        if user is None:
            self.credentials()
        else:
            self.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.get_or_create(user=user)[0].key}")


@pytest.fixture(params=["drf", "token"])
def api(request):
    """Every API test here runs twice: signed in the way DRF's test client does it (the DRF views answer),
    and with an API token (the hot path answers next item and submit)."""
    return APIClient() if request.param == "drf" else TokenClient()
