import pytest
from django.core.cache import cache

from tests.factories import UserFactory


@pytest.fixture(autouse=True)
def fresh_cache():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def rater(db):
    return UserFactory()


@pytest.fixture
def admin_client(client, admin):
    client.force_login(admin)
    return client
