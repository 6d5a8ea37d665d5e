"""Fixtures shared by every test package. Helpers (functions, not fixtures) are in tests/helpers.py."""
import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")


def on_postgresql() -> bool:
    from django.conf import settings

    return settings.DATABASES["default"]["ENGINE"].endswith("postgresql")


def pytest_collection_modifyitems(config, items):
    """Tests marked ``postgres`` are skipped on the embedded default (SQLite)."""
    if on_postgresql():
        return
    skip = pytest.mark.skip(reason="needs PostgreSQL (this run is on SQLite)")
    for item in items:
        if item.get_closest_marker("postgres"):
            item.add_marker(skip)


FIGURES = pytest.StashKey[list]()


@pytest.fixture
def figures(request) -> list:
    """Lines a test adds here are printed in the run's summary (e.g. how many inputs a catalogue tried)."""
    return request.config.stash.setdefault(FIGURES, [])


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    lines = config.stash.get(FIGURES, [])
    if lines:
        terminalreporter.section("figures")
        for line in lines:
            terminalreporter.write_line(line)


@pytest.fixture(autouse=True)
def _empty_cache():
    """Each test starts with an empty cache: on SQLite a rolled-back test's ids come back in the next test, and
    a report cached under them (the quality report's key is its project's id and annotation state) would too."""
    yield
    from django.core.cache import cache

    cache.clear()


@pytest.fixture(scope="session", autouse=True)
def _fresh_run_directories():
    """Run ids restart with each fresh test database: directories of an earlier session's runs are not ours."""
    import shutil
    from pathlib import Path

    from django.conf import settings

    for sub in ("runs", "evaluations"):
        shutil.rmtree(Path(settings.PS_DATA_DIR) / sub, ignore_errors=True)


@pytest.fixture(params=[pytest.param("sql", marks=pytest.mark.postgres), "orm"])
def sql_and_orm(request):
    """Run a test on both sides of annotation.pg: PostgreSQL's statements ("sql") and the ORM code that is
    their reference and that every other database takes ("orm"; on SQLite only this one runs)."""
    from annotation import pg

    with pg.forced(request.param == "sql"):
        yield request.param


@pytest.fixture
def api():
    from rest_framework.test import APIClient

    return APIClient()


@pytest.fixture
def admin(db):
    from tests.factories import AdminFactory

    return AdminFactory()


@pytest.fixture
def admin_client(client, admin):
    client.force_login(admin)
    return client


@pytest.fixture
def rater(db):
    from tests.factories import UserFactory

    return UserFactory()


@pytest.fixture
def raters(db):
    from tests.factories import UserFactory

    return [UserFactory(username=f"rater{i}") for i in range(3)]


@pytest.fixture
def pairwise(db):
    from tests.factories import make_project

    return make_project("pairwise")


@pytest.fixture
def rater_client(client, rater, pairwise):
    from tests.factories import add_member

    add_member(pairwise, rater)
    client.force_login(rater)
    return client


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
    """The one real Celery worker of the session (Redis + the test database), shared by every package:
    two workers on one queue would split a test's deliveries between them."""
    from tests.helpers import session_worker

    yield from session_worker(tmp_path_factory)
