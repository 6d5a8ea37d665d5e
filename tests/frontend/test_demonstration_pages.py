"""The demonstration page through Django's test client: the draft in the editor, autosave restored on reload,
what gets stored, and "improve this response" on pairwise and rating pages."""
import io
import json
import re

import pytest

from annotation.importer import import_items
from annotation.models import Annotation, Autosave
from tests.factories import UserFactory, add_member, make_item, make_project

pytestmark = pytest.mark.django_db

HX = {"HTTP_HX_REQUEST": "true"}


def project_with(rows, **config):
    project = make_project("demonstration", **config)
    data = "".join(json.dumps(r) + "\n" for r in rows).encode()
    import_items(project=project, stream=io.BytesIO(data), filename="rows.jsonl")
    return project


def form(html):
    action = re.search(r'<form id="annotate-form"[^>]*action="([^"]+)"', html).group(1)
    key = re.search(r'name="idempotency_key" value="([^"]+)"', html).group(1)
    item = re.search(r'data-item="(\d+)"', html).group(1)
    return action, key, item


def editor(html):
    return re.search(r'<textarea id="answer"[^>]*>(.*?)</textarea>', html, re.S).group(1)


@pytest.fixture
def writer(client, rater):
    client.force_login(rater)
    return client


def test_the_editor_starts_with_the_draft_and_the_answer_is_stored_as_edited(writer, rater):
    project = project_with([{"id": "p", "prompt": "Say hi <b>politely</b>.",
                             "responses": [{"text": "Hi <script>x</script>", "model": "secret-model"}]}])
    add_member(project, rater)
    html = writer.get(f"/p/{project.slug}/").content.decode()
    assert "secret-model" not in html
    assert "<script>x</script>" not in html  # model output is escaped everywhere
    assert editor(html) == "Hi &lt;script&gt;x&lt;/script&gt;"
    assert 'name="draft" id="draft-used" value="A"' in html
    action, key, _ = form(html)
    r = writer.post(action, {"text": "Hello, and welcome!", "draft": "A", "idempotency_key": key,
                             "time_spent_ms": "9000"}, **HX)
    assert r.status_code == 200 and "All done" in r.content.decode()
    annotation = Annotation.objects.get(rater=rater)
    assert annotation.payload["text"] == "Hello, and welcome!"
    assert annotation.payload["draft"] == annotation.item.item_responses.get().response_id
    assert annotation.time_spent_ms == 9000


def test_without_start_from_draft_the_editor_is_empty_and_a_blank_answer_is_refused(writer, rater):
    project = project_with([{"id": "p", "prompt": "Q?", "responses": ["A draft."]}], start_from_draft=False)
    add_member(project, rater)
    html = writer.get(f"/p/{project.slug}/").content.decode()
    assert editor(html) == "" and 'id="draft-used" value=""' in html
    assert "A draft." in html  # shown beside the editor
    action, key, _ = form(html)
    r = writer.post(action, {"text": "  ", "draft": "", "idempotency_key": key}, **HX)
    assert r.status_code == 422 and "text: is empty" in r.content.decode()
    assert not Annotation.objects.exists()


def test_an_autosave_is_restored_on_reload_and_removed_on_submit(writer, rater):
    project = project_with([{"id": "p", "prompt": "Write a haiku."}])
    add_member(project, rater)
    html = writer.get(f"/p/{project.slug}/").content.decode()
    _, key, item = form(html)
    r = writer.post(f"/p/{project.slug}/items/{item}/autosave/", {"text": "An old silent pond", "draft": ""}, **HX)
    assert r.status_code == 200 and "Saved at" in r.content.decode()
    html = writer.get(f"/p/{project.slug}/").content.decode()
    assert editor(html) == "An old silent pond" and "Restored your unsent answer" in html

    other = UserFactory()
    add_member(project, other)
    writer.force_login(other)  # another rater gets the item fresh, without the first rater's words
    assert "An old silent pond" not in writer.get(f"/p/{project.slug}/").content.decode()

    writer.force_login(rater)
    action, key, _ = form(writer.get(f"/p/{project.slug}/").content.decode())
    writer.post(action, {"text": "An old silent pond / a frog jumps in", "draft": "", "idempotency_key": key}, **HX)
    assert not Autosave.objects.filter(rater=rater).exists()
    assert Annotation.objects.get(rater=rater).payload["draft"] is None


def test_autosave_of_an_item_of_another_project_is_not_found(writer, rater):
    mine = project_with([{"id": "p", "prompt": "Mine."}])
    theirs = project_with([{"id": "q", "prompt": "Theirs."}])
    add_member(mine, rater)
    item = theirs.items.get()
    r = writer.post(f"/p/{mine.slug}/items/{item.pk}/autosave/", {"text": "x"}, **HX)
    assert r.status_code == 404
    r = writer.post(f"/p/{theirs.slug}/items/{item.pk}/autosave/", {"text": "x"}, **HX)
    assert r.status_code == 404
    assert not Autosave.objects.exists()


def test_admin_pages_of_a_demonstration_project_show_its_figures(client, admin, rater):
    project = project_with([{"id": "p", "prompt": "Q?", "responses": ["A draft."]}, {"id": "q", "prompt": "R?"}])
    add_member(project, rater)
    client.force_login(rater)
    for _ in range(2):
        html = client.get(f"/p/{project.slug}/").content.decode()
        action, key, _ = form(html)
        draft = re.search(r'id="draft-used" value="([^"]*)"', html).group(1)
        client.post(action, {"text": "An answer.", "draft": draft, "idempotency_key": key}, **HX)
    assert Annotation.objects.filter(rater=rater).count() == 2
    client.force_login(admin)
    assert client.get(f"/manage/{project.pk}/").status_code == 200
    page = client.get(f"/manage/{project.pk}/quality/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "Demonstrations" in html and 'id="fig-from-draft">1 of 2' in html


def test_the_manage_page_offers_the_exports_that_fit_the_mode(client, admin):
    demo = project_with([{"id": "p", "prompt": "Q?"}])
    client.force_login(admin)
    html = client.get(f"/manage/{demo.pk}/").content.decode()
    assert "kind=sft&amp;format=jsonl" in html and "kind=kto" not in html
    pairwise = make_project("pairwise")
    html = client.get(f"/manage/{pairwise.pk}/").content.decode()
    assert "kind=sft&amp;format=jsonl" in html and "kind=kto" in html


def test_an_improvement_is_kept_when_the_rater_edits_their_answer(writer, rater):
    project = make_project("rating", improve=True)
    make_item(project, ["Water boils at 90 C."])
    add_member(project, rater)
    html = writer.get(f"/p/{project.slug}/").content.decode()
    assert 'id="improve-text"' in html and "Water boils at 90 C." in html
    action, key, _ = form(html)
    writer.post(action, {"overall": "2", "improve_text": "Water boils at 100 C.", "improve_response": "A",
                         "idempotency_key": key}, **HX)
    annotation = Annotation.objects.get(rater=rater)
    assert annotation.payload["improved"]["text"] == "Water boils at 100 C."
    edit = writer.get(f"/p/{project.slug}/annotations/{annotation.pk}/edit/").content.decode()
    assert re.search(r'<textarea id="improve-text"[^>]*>Water boils at 100 C.</textarea>', edit)
    writer.post(f"/p/{project.slug}/annotations/{annotation.pk}/edit/",
                {"overall": "3", "improve_text": "Water boils at 100 C at sea level.", "improve_response": "A"}, **HX)
    annotation.refresh_from_db()
    assert annotation.payload["overall"] == 3
    assert annotation.payload["improved"]["text"] == "Water boils at 100 C at sea level."
