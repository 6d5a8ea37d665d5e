"""Demonstration projects: the rater writes the assistant's answer, from scratch or from a model draft; their
unsent answer is autosaved and only they can read it back; pairwise and rating projects may ask for an improved
response."""
import io
import json

import pytest

from annotation.importer import import_items
from annotation.models import Annotation, Autosave, Item
from annotation.project_config import validate_project_config
from tests.factories import UserFactory, add_member, make_item, make_project

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("sql_and_orm")]


def imported(project, rows):
    data = "".join(json.dumps(r) + "\n" for r in rows).encode()
    return import_items(project=project, stream=io.BytesIO(data), filename="rows.jsonl")


@pytest.fixture
def demo(db):
    project = make_project("demonstration", overlap=1)
    imported(project, [
        {"id": "scratch", "messages": [{"role": "user", "content": "Name a colour."},
                                       {"role": "assistant", "content": "Blue."},
                                       {"role": "user", "content": "Another one?"}]},
        {"id": "drafted", "prompt": "Say hello.", "responses": [{"text": "Hullo there.", "model": "small"}]},
    ])
    return project


def serve(api, project, rater):
    api.force_authenticate(rater)
    r = api.get(f"/api/v1/projects/{project.pk}/next/")
    assert r.status_code == 200, r.content
    return r.json()["item"]


def submit(api, item_id, payload, **extra):
    return api.post(f"/api/v1/items/{item_id}/annotations/", {"payload": payload, **extra}, format="json")


def test_the_config_of_a_demonstration_project_has_its_defaults_and_refuses_gold():
    assert validate_project_config("demonstration", {})["start_from_draft"] is True
    with pytest.raises(Exception) as exc:
        validate_project_config("demonstration", {"gold_rate": 0.1})
    assert "gold_rate" in str(exc.value)
    assert validate_project_config("pairwise", {"improve": True})["improve"] is True
    assert validate_project_config("rating", {})["improve"] is False


def test_an_import_makes_one_item_per_draft_or_one_to_write_from_scratch(demo):
    items = {i.prompt.external_id: list(i.item_responses.values_list("response__text", flat=True))
             for i in Item.objects.filter(project=demo).select_related("prompt")}
    assert items == {"scratch": [], "drafted": ["Hullo there."]}
    result = imported(demo, [{"id": "two", "prompt": "Hi", "responses": ["a", "b"]}])
    assert result.items_created == 2


def test_a_rater_writes_answers_from_scratch_and_from_the_draft(api, demo, rater):
    add_member(demo, rater)
    seen = {}
    for _ in range(2):
        item = serve(api, demo, rater)
        if item["responses"]:
            assert item["responses"][0]["text"] == "Hullo there."
            r = submit(api, item["id"], {"text": "Hello there!", "draft": "A"})
        else:
            assert item["prompt"]["messages"][-1]["content"] == "Another one?"  # a later turn to answer
            r = submit(api, item["id"], {"text": "Green.", "comment": "easy"})
        assert r.status_code == 201, r.content
        seen[item["id"]] = Annotation.objects.get(pk=r.json()["id"]).payload
    api.force_authenticate(rater)
    assert api.get(f"/api/v1/projects/{demo.pk}/next/").status_code == 204
    drafted = Item.objects.get(prompt__external_id="drafted")
    draft_id = drafted.item_responses.get().response_id
    assert seen[drafted.pk] == {"text": "Hello there!", "draft": draft_id, "comment": ""}
    scratch = Item.objects.get(prompt__external_id="scratch")
    assert seen[scratch.pk] == {"text": "Green.", "draft": None, "comment": "easy"}


@pytest.mark.parametrize("payload, field", [
    ({}, "payload.text"),
    ({"text": "   "}, "payload.text"),
    ({"text": 12}, "payload.text"),
    ({"text": "ok", "draft": "B"}, "payload.draft"),
    ({"text": "ok", "choice": "A"}, "payload.choice"),
    ({"text": "a\x00b"}, "payload.text"),
])
def test_a_bad_demonstration_is_refused_naming_the_field(api, demo, rater, payload, field):
    add_member(demo, rater)
    while (item := serve(api, demo, rater)) and not item["responses"]:
        submit(api, item["id"], {"text": "fine"})
    r = submit(api, item["id"], payload)
    assert r.status_code == 400, r.content
    assert field in r.json()["errors"]


def test_a_draft_is_refused_on_an_item_without_one(api, demo, rater):
    add_member(demo, rater)
    while (item := serve(api, demo, rater)) and item["responses"]:
        submit(api, item["id"], {"text": "fine", "draft": "A"})
    r = submit(api, item["id"], {"text": "mine", "draft": "A"})
    assert r.status_code == 400 and "payload.draft" in r.json()["errors"]


def test_demonstration_items_cannot_be_gold(api, demo, admin):
    api.force_authenticate(admin)
    item = Item.objects.filter(project=demo).first()
    r = api.post(f"/api/v1/items/{item.pk}/gold/", {"is_gold": True, "payload": {"text": "x"}}, format="json")
    assert r.status_code == 400 and r.json()["field"] == "is_gold"


# --- autosave -------------------------------------------------------------------------------------


def test_an_autosave_is_kept_for_its_rater_and_read_back_by_them_only(api, demo, rater):
    other = add_member(demo, UserFactory())
    add_member(demo, rater)
    item = serve(api, demo, rater)
    url = f"/api/v1/items/{item['id']}/autosave/"
    assert api.get(url).status_code == 404
    r = api.put(url, {"payload": {"text": "Half an ans", "draft": None}}, format="json")
    assert r.status_code == 200, r.content
    r = api.put(url, {"payload": {"text": "Half an answer", "draft": None}}, format="json")
    assert api.get(url).json()["payload"] == {"text": "Half an answer", "draft": None}
    assert Autosave.objects.count() == 1

    api.force_authenticate(other)  # another rater of the project sees nothing of it
    assert api.get(url).status_code == 404
    api.put(url, {"payload": {"text": "theirs"}}, format="json")
    api.force_authenticate(rater)
    assert api.get(url).json()["payload"]["text"] == "Half an answer"

    outsider = UserFactory()  # not a member: the item does not exist for them
    api.force_authenticate(outsider)
    assert api.put(url, {"payload": {"text": "x"}}, format="json").status_code == 404
    assert api.get(url).status_code == 404


def test_an_admin_cannot_read_a_raters_autosave(api, demo, rater, admin):
    add_member(demo, rater)
    item = serve(api, demo, rater)
    url = f"/api/v1/items/{item['id']}/autosave/"
    api.put(url, {"payload": {"text": "private"}}, format="json")
    api.force_authenticate(admin)
    assert api.get(url).status_code == 404


@pytest.mark.parametrize("body, field", [
    ({"payload": ["not", "an", "object"]}, "payload"),
    ({"payload": {"text": "a\x00"}}, "payload"),
    ({"payload": {"text": "x" * 500_000}}, "payload"),
])
def test_a_bad_autosave_is_refused_naming_the_field(api, demo, rater, body, field):
    add_member(demo, rater)
    item = serve(api, demo, rater)
    r = api.put(f"/api/v1/items/{item['id']}/autosave/", body, format="json")
    assert r.status_code == 400, r.content
    assert (r.json().get("field") or "").startswith(field) or field in r.json().get("errors", {})


def test_no_autosave_after_the_item_is_answered(api, demo, rater):
    add_member(demo, rater)
    item = serve(api, demo, rater)
    submit(api, item["id"], {"text": "Done.", **({"draft": "A"} if item["responses"] else {})})
    r = api.put(f"/api/v1/items/{item['id']}/autosave/", {"payload": {"text": "late"}}, format="json")
    assert r.status_code == 409


# --- improve this response ------------------------------------------------------------------------


def test_pairwise_raters_may_improve_the_better_response_when_the_project_asks(api, rater):
    project = make_project("pairwise", improve=True, strength=False)
    make_item(project, ["Paris is in France.", "Paris is a city."])
    add_member(project, rater)
    item = serve(api, project, rater)
    bad = submit(api, item["id"], {"choice": "A", "improved": {"response": "B", "text": "x"}})
    assert bad.status_code == 400 and "payload.improved.response" in bad.json()["errors"]
    tie = submit(api, item["id"], {"choice": "tie", "improved": {"response": "A", "text": "x"}})
    assert tie.status_code == 400 and "payload.improved" in tie.json()["errors"]
    empty = submit(api, item["id"], {"choice": "A", "improved": {"response": "A", "text": ""}})
    assert empty.status_code == 400 and "payload.improved.text" in empty.json()["errors"]
    r = submit(api, item["id"], {"choice": "B", "improved": {"response": "B", "text": "Paris is the capital of France."}})
    assert r.status_code == 201, r.content
    payload = Annotation.objects.get(pk=r.json()["id"]).payload
    assert payload["improved"] == {"response": item["responses"][1]["id"], "text": "Paris is the capital of France."}
    assert payload["chosen"] == item["responses"][1]["id"]


def test_improvements_are_refused_where_the_project_does_not_ask_and_rating_improves_the_rated_one(api, rater):
    plain = make_project("pairwise", strength=False)
    make_item(plain)
    add_member(plain, rater)
    item = serve(api, plain, rater)
    r = submit(api, item["id"], {"choice": "A", "improved": {"response": "A", "text": "better"}})
    assert r.status_code == 400 and "payload.improved" in r.json()["errors"]

    rating = make_project("rating", improve=True)
    make_item(rating, ["Water boils at 90 C."])
    add_member(rating, rater)
    item = serve(api, rating, rater)
    r = submit(api, item["id"], {"overall": 2, "improved": {"response": "A", "text": "Water boils at 100 C at sea level."}})
    assert r.status_code == 201, r.content
    assert Annotation.objects.get(pk=r.json()["id"]).payload["improved"]["response"] == item["responses"][0]["id"]
