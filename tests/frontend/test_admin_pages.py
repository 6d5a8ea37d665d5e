"""Admin project pages: create with a validated config, import with line-numbered errors, members."""
import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from annotation.models import Item, Membership, Project
from tests.factories import UserFactory, make_project

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client, admin):
    client.force_login(admin)
    return client


def test_create_project_with_config(admin_client):
    r = admin_client.post("/manage/", {"name": "Helpful chat", "mode": "pairwise", "guidelines": "Pick the *better* one.",
                                       "config": json.dumps({"overlap": 3, "criteria": ["honesty"]})})
    project = Project.objects.get(name="Helpful chat")
    assert r.status_code == 302 and r.headers["Location"] == f"/manage/{project.pk}/"
    assert project.config["overlap"] == 3 and project.config["criteria"] == ["honesty"]


@pytest.mark.parametrize("config, message", [
    ('{"scale": 99}', "config.scale: must be an integer from 2 to 10"),
    ('{"overlap": 2,', "not valid JSON"),
    ('[1, 2]', "must be a JSON object"),
    ('{"colour": "red"}', "config.colour: unknown option"),
])
def test_bad_config_is_named_and_nothing_created(admin_client, config, message):
    r = admin_client.post("/manage/", {"name": "Scores", "mode": "rating", "config": config})
    assert r.status_code == 422
    assert message in r.content.decode()
    assert 'value="Scores"' in r.content.decode()  # what was typed is kept
    assert not Project.objects.exists()


def test_import_shows_the_result(admin_client):
    project = make_project("pairwise")
    rows = [{"id": "q1", "prompt": "Hi?", "responses": ["Hello", "Hey"]},
            {"id": "q2", "prompt": "Bye?", "responses": ["Bye", "Ciao"]}]
    upload = SimpleUploadedFile("batch.jsonl", "\n".join(json.dumps(r) for r in rows).encode())
    r = admin_client.post(f"/manage/{project.pk}/import/", {"file": upload, "round": "r1"}, follow=True)
    assert r.status_code == 200
    assert "batch.jsonl</strong> imported: 2 prompts, 4 responses, 2 items" in r.content.decode()
    assert Item.objects.filter(project=project).count() == 2


def test_import_errors_name_the_line_and_store_nothing(admin_client):
    project = make_project("pairwise")
    body = b'{"id": "q1", "prompt": "Hi?", "responses": ["a", "b"]}\n{"id": "q2", "responses": ["a", "b"]}\nnot json\n'
    r = admin_client.post(f"/manage/{project.pk}/import/", {"file": SimpleUploadedFile("bad.jsonl", body)}, follow=True)
    page = r.content.decode()
    assert "nothing was imported" in page
    assert "Line 2" in page and "Line 3" in page
    assert not Item.objects.filter(project=project).exists()


def test_import_without_a_file_is_named(admin_client):
    project = make_project("pairwise")
    r = admin_client.post(f"/manage/{project.pk}/import/", {})
    assert r.status_code == 422 and "This field is required." in r.content.decode()


def test_members_add_pause_and_remove(admin_client):
    project = make_project("pairwise")
    user = UserFactory(username="rita")
    assert admin_client.post(f"/manage/{project.pk}/members/", {"username": "rita"}).status_code == 302
    assert Membership.objects.filter(project=project, user=user).exists()
    r = admin_client.post(f"/manage/{project.pk}/members/", {"username": "nobody"})
    assert r.status_code == 422 and "no active user" in r.content.decode()
    admin_client.post(f"/manage/{project.pk}/members/rita/", {"action": "pause"})
    assert Membership.objects.get(project=project, user=user).is_paused
    admin_client.post(f"/manage/{project.pk}/members/rita/", {"action": "resume"})
    assert not Membership.objects.get(project=project, user=user).is_paused
    admin_client.post(f"/manage/{project.pk}/members/rita/", {"action": "remove"})
    assert not Membership.objects.filter(project=project, user=user).exists()


def test_project_page_links_exports_and_saves_guidelines(admin_client):
    project = make_project("pairwise")
    page = admin_client.get(f"/manage/{project.pk}/").content.decode()
    assert f"/api/v1/projects/{project.pk}/export/?kind=trl&amp;format=jsonl" in page
    admin_client.post(f"/manage/{project.pk}/settings/", {"guidelines": "Be fair.", "status": "paused"})
    project.refresh_from_db()
    assert project.guidelines == "Be fair." and project.status == "paused"


def test_unknown_project_is_404(admin_client):
    assert admin_client.get("/manage/999999/").status_code == 404


def test_download_link_serves_the_preference_export(admin_client, admin):
    import re

    from annotation import services
    from tests.factories import make_item

    project = make_project("pairwise", strength=False)
    item = make_item(project, ["good answer", "bad answer"])
    assignment = services.queue_next(rater=admin, project=project)
    side = "A" if assignment.display_order[0] == item.item_responses.get(position=0).response_id else "B"
    services.annotation_submit(rater=admin, item_id=item.pk, payload={"choice": side})
    page = admin_client.get(f"/manage/{project.pk}/").content.decode()
    url = re.search(r'href="([^"]*kind=trl&amp;format=jsonl)"', page).group(1).replace("&amp;", "&")
    r = admin_client.get(url)
    assert r.status_code == 200
    body = b"".join(r.streaming_content) if r.streaming else r.content
    row = json.loads(body.decode().splitlines()[0])
    assert "good answer" in json.dumps(row["chosen"]) and "bad answer" in json.dumps(row["rejected"])
