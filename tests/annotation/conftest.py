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


@pytest.fixture(params=["sql", "orm"])
def both_paths(request, monkeypatch):
    """Run a test twice: through PostgreSQL's SQL functions and through the ORM path that other databases
    (the SQLite default) take."""
    if request.param == "orm":
        from annotation import services

        monkeypatch.setattr(services, "_on_postgresql", lambda: False)
    return request.param
