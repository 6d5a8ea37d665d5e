"""Next item and submit from token clients are answered ahead of DRF (annotation.api.hotpath), exactly as
the DRF views answer them: the same status, body and headers."""
from contextlib import contextmanager

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient
from rest_framework.views import APIView

from annotation.models import Annotation, Membership
from tests.factories import UserFactory, add_member, make_item, make_project

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("sql_and_orm")]

VIA_DRF = "?via=drf"  # a query string sends the same call on to the DRF view
PAIR = {"choice": "A", "strength": "slight"}


def token_client(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.get_or_create(user=user)[0].key}")
    return client


@pytest.fixture
def world():
    project = make_project("pairwise", overlap=2)
    items = [make_item(project, ["left", "right"]) for _ in range(3)]
    rater = add_member(project, UserFactory())
    empty = make_project("pairwise")
    add_member(empty, rater)
    other_item = make_item(make_project("pairwise"), ["x", "y"])
    return {"project": project, "items": items, "rater": rater, "empty": empty, "other_item": other_item,
            "client": token_client(rater)}


@pytest.fixture
def without_drf(monkeypatch):
    """Inside it, a call that reaches a DRF view fails the test: proof that the hot path answered."""

    def refuse(*args, **kwargs):
        raise AssertionError("a DRF view answered a call the hot path should have")

    @contextmanager
    def scope():
        with monkeypatch.context() as patch:
            patch.setattr(APIView, "dispatch", refuse)
            yield

    return scope


def call(client, url, body=None):
    return client.get(url) if body is None else client.post(url, body, format="json")


def assert_same(hot, drf):
    assert (hot.status_code, hot.content) == (drf.status_code, drf.content)
    assert dict(hot.headers) == dict(drf.headers)


def both(without_drf, client, url, body=None):
    with without_drf():
        hot = call(client, url, body)
    return hot, call(client, url + VIA_DRF, body)


def test_next_item_is_served_by_the_hot_path_as_by_the_view(world, without_drf):
    client, project = world["client"], world["project"]
    hot, drf = both(without_drf, client, f"/api/v1/projects/{project.pk}/next/")  # the same live lease twice
    assert hot.status_code == 200 and hot.json()["item"]["id"] in {i.pk for i in world["items"]}
    assert "model" not in hot.content.decode()
    assert_same(hot, drf)
    assert_same(*both(without_drf, client, f"/api/v1/projects/{world['empty'].pk}/next/"))  # 204, no body
    assert drf.headers["X-Frame-Options"] == "DENY" and drf.headers["X-Content-Type-Options"] == "nosniff"


def test_refusals_are_the_same_on_sql_and_orm(world, without_drf):
    client, project = world["client"], world["project"]
    item_id = client.get(f"/api/v1/projects/{project.pk}/next/").json()["item"]["id"]
    cases = [
        (f"/api/v1/projects/{project.pk + 1000}/next/", None, 404),  # no such project
        (f"/api/v1/items/{world['other_item'].pk}/annotations/", {"payload": PAIR}, 404),  # not a member there
        (f"/api/v1/items/{item_id}/annotations/", {"payload": {"choice": "C"}}, 400),  # a bad payload
        (f"/api/v1/items/{item_id}/annotations/", {"payload": PAIR, "idempotency_key": "k" * 100,
                                                  "time_spent_ms": 86_400_000}, 201),
    ]
    for url, body, status in cases[:-1]:
        hot, drf = both(without_drf, client, url, body)
        assert hot.status_code == status, hot.content
        assert_same(hot, drf)
    url, body, status = cases[-1]
    with without_drf():
        first = call(client, url, body)
    replay_hot, replay_drf = both(without_drf, client, url, body)
    assert (first.status_code, replay_hot.status_code) == (201, 200)
    assert replay_hot.json() == first.json()
    assert_same(replay_hot, replay_drf)
    Membership.objects.filter(user=world["rater"], project=project).update(is_paused=True, paused_reason="Retrain")
    hot, drf = both(without_drf, client, f"/api/v1/projects/{project.pk}/next/")
    assert hot.status_code == 403 and hot.json()["detail"] == "Retrain"
    assert_same(hot, drf)


def test_a_submission_the_hot_path_does_not_take_as_it_is_gets_the_views_answer(world):
    client, project = world["client"], world["project"]
    item_id = client.get(f"/api/v1/projects/{project.pk}/next/").json()["item"]["id"]
    url = f"/api/v1/items/{item_id}/annotations/"
    r = client.post(url, {"payload": "A"}, format="multipart")
    assert r.status_code == 400  # a form: DRF reads it, and a string is no pairwise payload
    r = client.post(url, {"idempotency_key": "k"}, format="json")
    assert r.status_code == 400 and r.json()["field"] == "payload"
    r = client.post(url, '{"payload": NaN}', content_type="application/json")
    assert r.status_code == 400 and "JSON parse error" in r.json()["detail"]
    r = client.post(url, {"payload": PAIR, "time_spent_ms": -1}, format="json")
    assert r.status_code == 400 and r.json()["field"] == "time_spent_ms"
    assert not Annotation.objects.exists()
    r = client.post(url, {"payload": PAIR, "time_spent_ms": "1500", "idempotency_key": " padded "}, format="json")
    assert r.status_code == 201  # as from a form: a numeric string, surrounding spaces trimmed
    assert Annotation.objects.get().time_spent_ms == 1500 and r.json()["idempotency_key"] == "padded"


def test_a_bad_or_revoked_token_gets_drfs_401(world):
    url = f"/api/v1/projects/{world['project'].pk}/next/"
    bad = APIClient()
    bad.credentials(HTTP_AUTHORIZATION="Token not-a-token")
    r = bad.get(url)
    assert r.status_code == 401 and r.headers["WWW-Authenticate"] == "Token"
    world["rater"].is_active = False
    world["rater"].save()
    r = world["client"].get(url)
    assert r.status_code == 401 and "inactive" in r.json()["detail"]


def test_a_browser_session_still_needs_its_csrf_token(world):
    browser = APIClient(enforce_csrf_checks=True)
    browser.force_login(world["rater"])
    item_id = browser.get(f"/api/v1/projects/{world['project'].pk}/next/").json()["item"]["id"]
    r = browser.post(f"/api/v1/items/{item_id}/annotations/", {"payload": PAIR}, format="json")
    assert r.status_code == 403 and "CSRF" in r.json()["detail"]
    assert not Annotation.objects.exists()
