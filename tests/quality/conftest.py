import pytest

from tests.factories import AdminFactory, UserFactory, add_member


@pytest.fixture
def admin(db):
    return AdminFactory()


@pytest.fixture
def raters(db):
    return [UserFactory(username=f"q-rater{i}") for i in range(3)]


@pytest.fixture
def join():
    def _join(project, users):
        for user in users:
            add_member(project, user)
        return users
    return _join
