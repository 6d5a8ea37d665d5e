"""Looking without taking: an admin who is not a member previews the next item (API and page) without leasing it,
HEAD never leases, and a body too large to read is refused with the connection closed."""
import pytest

from annotation.models import Assignment
from tests.factories import UserFactory, add_member, make_item, make_project

pytestmark = pytest.mark.django_db


@pytest.fixture
def project():
    project = make_project("pairwise", overlap=1)
    make_item(project, ["low a", "low b"])
    make_item(project, ["urgent a", "urgent b"], priority=5)
    return project


def test_an_admin_who_is_not_a_member_previews_without_a_lease(api, admin, project):
    api.force_authenticate(admin)
    r = api.get(f"/api/v1/projects/{project.pk}/next/")
    assert r.status_code == 200 and r.json()["item"]["preview"] is True
    assert r.json()["item"]["lease_expires_at"] is None
    assert {x["text"] for x in r.json()["item"]["responses"]} == {"urgent a", "urgent b"}
    assert not Assignment.objects.exists()
    rater = add_member(project, UserFactory())
    api.force_authenticate(rater)
    served = api.get(f"/api/v1/projects/{project.pk}/next/").json()["item"]
    assert "preview" not in served and served["lease_expires_at"] is not None  # the rater still gets it
    assert Assignment.objects.filter(rater=rater).count() == 1


def test_an_admin_who_is_a_member_is_served_as_a_rater(api, admin, project):
    add_member(project, admin)
    api.force_authenticate(admin)
    assert "preview" not in api.get(f"/api/v1/projects/{project.pk}/next/").json()["item"]
    assert Assignment.objects.filter(rater=admin).count() == 1


def test_opening_the_page_as_a_non_member_admin_takes_no_lease(client, admin, project):
    client.force_login(admin)
    r = client.get(f"/p/{project.slug}/")
    assert r.status_code == 200 and "urgent a" in r.content.decode() and "preview" in r.content.decode().lower()
    assert not Assignment.objects.exists()


def test_head_never_leases(api, client, project):
    rater = add_member(project, UserFactory())
    api.force_authenticate(rater)
    assert api.head(f"/api/v1/projects/{project.pk}/next/").status_code == 200
    client.force_login(rater)
    assert client.head(f"/p/{project.slug}/").status_code == 200
    assert not Assignment.objects.exists()
    empty = make_project("pairwise")
    add_member(empty, rater)
    assert api.head(f"/api/v1/projects/{empty.pk}/next/").status_code == 204


def test_a_body_too_large_to_read_is_refused_and_the_connection_closed(api, settings, project):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    rater = add_member(project, UserFactory())
    api.force_authenticate(rater)
    item_id = api.get(f"/api/v1/projects/{project.pk}/next/").json()["item"]["id"]
    r = api.post(f"/api/v1/items/{item_id}/annotations/", {"payload": {"choice": "tie", "comment": "x" * 2000}},
                 format="json")
    assert r.status_code == 413 and r["Connection"] == "close" and "DATA_UPLOAD_MAX_MEMORY_SIZE" in r.json()["detail"]
