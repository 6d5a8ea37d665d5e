import pytest

from tests.factories import UserFactory, add_member, make_project


@pytest.fixture
def rater(db):
    return UserFactory()


@pytest.fixture
def pairwise(db):
    return make_project("pairwise")


@pytest.fixture
def rater_client(client, rater, pairwise):
    add_member(pairwise, rater)
    client.force_login(rater)
    return client
