"""A kept database connection is checked before each request reuses it, without a round trip to the server:
every rater call would otherwise pay a "SELECT 1" (a tenth of the hot path's database and web CPU). A connection
the server has ended (a restart, an administrator's terminate) is still noticed, and the request reconnects."""
import pytest
from django.db import connections

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]


@pytest.fixture
def kept():
    """A connection of its own, as a web process keeps one between requests (health checks on)."""
    wrapper = connections.create_connection("default")
    wrapper.ensure_connection()
    assert wrapper.health_check_enabled
    yield wrapper
    wrapper.close()


def on_another_connection(sql: str, params=()) -> tuple | None:
    other = connections.create_connection("default")
    try:
        with other.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchone() if cursor.description else None
    finally:
        other.close()


def last_statement(pid: int) -> str:
    """What the server last ran for the backend ``pid``."""
    return on_another_connection("SELECT query FROM pg_stat_activity WHERE pid = %s", [pid])[0]


def a_request_starts(wrapper) -> None:
    """What Django does as a request starts (request_started), then the request's first statement."""
    wrapper.close_if_unusable_or_obsolete()
    with wrapper.cursor() as cursor:
        cursor.execute("SELECT 'the request'")
        assert cursor.fetchone() == ("the request",)


def test_a_kept_connection_is_checked_without_a_statement(kept):
    pid = kept.connection.info.backend_pid
    with kept.cursor() as cursor:
        cursor.execute("SELECT 'the last request'")
    kept.close_if_unusable_or_obsolete()  # the next request starts: the check is due
    assert not kept.health_check_done
    kept.close_if_health_check_failed()
    assert kept.health_check_done and kept.connection is not None
    assert last_statement(pid) == "SELECT 'the last request'"  # no "SELECT 1" went to the server
    a_request_starts(kept)
    assert kept.connection.info.backend_pid == pid  # the same connection served it


def test_a_connection_the_server_ended_is_replaced_before_the_request_uses_it(kept):
    pid = kept.connection.info.backend_pid
    # As a restart does to every backend; its requests come once it is back.
    assert on_another_connection("SELECT pg_terminate_backend(%s, 10000)", [pid]) == (True,)
    a_request_starts(kept)  # no error reaches the request
    assert kept.connection.info.backend_pid != pid


def test_a_notice_waiting_on_an_idle_connection_does_not_drop_it(kept):
    """Something the server sent on its own (here a notification) is read by the full check, which keeps a
    connection that still answers."""
    pid = kept.connection.info.backend_pid
    with kept.cursor() as cursor:
        cursor.execute("LISTEN ps_connection_check")
    on_another_connection("NOTIFY ps_connection_check")
    a_request_starts(kept)
    assert kept.connection.info.backend_pid == pid
