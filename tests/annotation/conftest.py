import pytest

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
