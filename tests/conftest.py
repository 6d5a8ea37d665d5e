import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture
def api():
    from rest_framework.test import APIClient

    return APIClient()


@pytest.fixture
def admin(db):
    from tests.factories import AdminFactory

    return AdminFactory()


@pytest.fixture
def join():
    """Make users members of a project: ``join(project, users)``."""
    from tests.factories import add_member

    def _join(project, users):
        for user in users:
            add_member(project, user)
        return users

    return _join


@pytest.fixture(scope="session")
def worker(django_db_setup, tmp_path_factory):
    """The one real Celery worker of the session (Redis + the test PostgreSQL database)."""
    from tests.training.conftest import session_worker

    yield from session_worker(tmp_path_factory)
