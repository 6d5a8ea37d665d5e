"""Who may call what: every API v1 endpoint for anonymous users, outsiders, project raters and admins."""
import pytest

from annotation.models import Annotation
from annotation.services import annotation_submit
from tests.factories import AdminFactory, UserFactory, add_member, make_item, make_project

pytestmark = pytest.mark.django_db


@pytest.fixture
def world():
    project = make_project("pairwise", overlap=3)
    item = make_item(project, ["one", "two"])
    rater = add_member(project, UserFactory(username="inside"))
    outsider = UserFactory(username="outsider")
    admin = AdminFactory(username="boss")
    own, _ = annotation_submit(rater=rater, item_id=make_item(project, ["x", "y"]).pk,
                               payload={"choice": "B", "strength": "better"})
    return {"project": project, "item": item, "rater": rater, "outsider": outsider, "admin": admin, "own": own}


def endpoints(w):
    p, i, a = w["project"].pk, w["item"].pk, w["own"].pk
    pair = {"payload": {"choice": "A", "strength": "slight"}}
    return [
        # (method, url, body, expected status for: anonymous, outsider, rater, admin)
        ("get", "/api/v1/projects/", None, (401, 200, 200, 200)),
        ("post", "/api/v1/projects/", {"name": "N", "mode": "rating"}, (401, 403, 403, 201)),
        ("get", f"/api/v1/projects/{p}/", None, (401, 404, 200, 200)),
        ("patch", f"/api/v1/projects/{p}/", {"guidelines": "Be kind."}, (401, 404, 403, 200)),
        ("get", f"/api/v1/projects/{p}/members/", None, (401, 404, 403, 200)),
        ("post", f"/api/v1/projects/{p}/members/", {"username": "outsider"}, (401, 404, 403, 201)),
        ("patch", f"/api/v1/projects/{p}/members/inside/", {"is_paused": False}, (401, 404, 403, 200)),
        ("get", f"/api/v1/projects/{p}/stats/", None, (401, 404, 403, 200)),
        ("get", f"/api/v1/projects/{p}/my-annotations/", None, (401, 404, 200, 200)),
        ("post", f"/api/v1/projects/{p}/gold/from-imported/", {}, (401, 404, 403, 200)),
        ("post", f"/api/v1/projects/{p}/import/", None, (401, 404, 403, 400)),
        ("get", f"/api/v1/projects/{p}/next/", None, (401, 404, 200, 200)),
        ("post", f"/api/v1/items/{i}/annotations/", pair, (401, 404, 201, 201)),
        ("post", f"/api/v1/items/{i}/skip/", None, (401, 404, 200, 200)),
        ("get", f"/api/v1/items/{i}/", None, (401, 404, 403, 200)),
        ("patch", f"/api/v1/items/{i}/", {"priority": 3}, (401, 404, 403, 200)),
        ("post", f"/api/v1/items/{i}/gold/", {"is_gold": False}, (401, 404, 403, 200)),
        ("get", f"/api/v1/annotations/{a}/", None, (401, 404, 200, 404)),
        ("patch", f"/api/v1/annotations/{a}/", {"payload": {"choice": "tie"}}, (401, 404, 200, 404)),
        ("delete", f"/api/v1/projects/{p}/members/inside/", None, (401, 404, 403, 204)),
    ]


@pytest.mark.parametrize("who", ["anonymous", "outsider", "rater", "admin"])
def test_permission_matrix(api, world, who):
    column = ["anonymous", "outsider", "rater", "admin"].index(who)
    if who != "anonymous":
        api.force_authenticate(world[who])
    failures = []
    for method, url, body, expected in endpoints(world):
        # Fresh state per call: an earlier skip or submit must not change what the next one sees.
        Annotation.objects.filter(item=world["item"]).delete()
        world["item"].assignments.all().delete()
        response = getattr(api, method)(url, body, format="json") if body is not None else getattr(api, method)(url)
        if response.status_code != expected[column]:
            failures.append(f"{method.upper()} {url}: {response.status_code}, expected {expected[column]}")
        assert response.status_code < 500
    assert not failures, "\n".join(failures)


def test_token_auth_works_and_a_bad_token_is_refused(api, world):
    from rest_framework.authtoken.models import Token

    token = Token.objects.create(user=world["rater"])
    api.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    assert api.get(f"/api/v1/projects/{world['project'].pk}/next/").status_code == 200
    api.credentials(HTTP_AUTHORIZATION="Token nope")
    assert api.get("/api/v1/projects/").status_code == 401


def test_a_deleted_token_or_a_deactivated_rater_is_refused_at_once(api, world):
    """Token users are remembered for a while; deleting the token or deactivating the user forgets them."""
    from rest_framework.authtoken.models import Token

    url = f"/api/v1/projects/{world['project'].pk}/"
    token = Token.objects.create(user=world["rater"])
    api.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    assert api.get(url).status_code == 200
    token.delete()
    assert api.get(url).status_code == 401
    token = Token.objects.create(user=world["rater"])
    api.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    assert api.get(url).status_code == 200
    world["rater"].is_active = False
    world["rater"].save()
    r = api.get(url)
    assert r.status_code == 401 and "inactive" in r.json()["detail"]


def test_the_api_answers_json_unless_the_browser_asks_for_html(api, world):
    api.force_authenticate(world["rater"])
    url = f"/api/v1/projects/{world['project'].pk}/"
    for accept in ("", "*/*", "application/json"):
        r = api.get(url, HTTP_ACCEPT=accept) if accept else api.get(url)
        assert r["Content-Type"] == "application/json" and r.json()["id"] == world["project"].pk
    r = api.get(url, HTTP_ACCEPT="text/html,application/xhtml+xml;q=0.9")
    assert r["Content-Type"].startswith("text/html")
    assert api.get(url, HTTP_ACCEPT="application/xml").status_code == 406


def test_raters_list_only_their_projects(api, world):
    make_project("rating")
    api.force_authenticate(world["rater"])
    assert [p["id"] for p in api.get("/api/v1/projects/").json()] == [world["project"].pk]


def test_schema_and_docs_are_served(api, world):
    assert api.get("/api/schema/").status_code == 200
    api.force_authenticate(world["admin"])
    schema = api.get("/api/schema/", HTTP_ACCEPT="application/json").json()
    assert "/api/v1/projects/{project_id}/next/" in schema["paths"]
    assert api.get("/api/docs/").status_code == 200
