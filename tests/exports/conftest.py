import pytest

from tests.factories import UserFactory


@pytest.fixture
def raters(db):
    return [UserFactory(username=f"rater{i}") for i in range(3)]

