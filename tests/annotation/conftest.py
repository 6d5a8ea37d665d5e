import pytest
from rest_framework.test import APIClient

from tests.factories import add_member, make_item, make_project
from tests.helpers import TokenClient


@pytest.fixture
def project(db):
    project = make_project("pairwise", overlap=2)
    for _ in range(3):
        make_item(project)
    return project


@pytest.fixture
def member(project, rater):
    return add_member(project, rater)


@pytest.fixture(params=["drf", "token"])
def api(request):
    """Every API test here runs twice: signed in the way DRF's test client does it (the DRF views answer),
    and with an API token (the hot path answers next item and submit)."""
    return APIClient() if request.param == "drf" else TokenClient()
