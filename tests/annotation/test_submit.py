"""Submissions: per-mode validation, display positions mapped to response ids, replays, edits."""
from datetime import timedelta

import pytest
from django.utils import timezone

from annotation.models import Annotation, Membership
from annotation.services import annotation_submit, queue_next
from tests.factories import UserFactory, add_member, make_item, make_project

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("sql_and_orm")]


def serve(api, project, rater):
    api.force_authenticate(rater)
    return api.get(f"/api/v1/projects/{project.pk}/next/").json()["item"]


def submit(api, item_id, payload, **extra):
    return api.post(f"/api/v1/items/{item_id}/annotations/", {"payload": payload, **extra}, format="json")


def test_the_chosen_side_is_the_response_shown_there_whatever_the_display_order(api):
    project = make_project("pairwise", overlap=40)
    item = make_item(project, ["first", "second"])
    by_text = {ir.response.text: ir.response_id for ir in item.item_responses.select_related("response")}
    flips = set()
    for _ in range(40):
        rater = add_member(project, UserFactory())
        served = serve(api, project, rater)
        shown_left = served["responses"][0]
        flips.add(shown_left["text"])
        r = submit(api, item.pk, {"choice": "A", "strength": "significant", "criteria": {"safety": "B"}})
        assert r.status_code == 201
        stored = Annotation.objects.get(pk=r.json()["id"])
        assert stored.payload["chosen"] == by_text[shown_left["text"]] == shown_left["id"]
        assert stored.payload["rejected"] == served["responses"][1]["id"]
        assert stored.payload["criteria"]["safety"] == served["responses"][1]["id"]
        assert stored.raw_payload["choice"] == "A"
        assert stored.display_order == [r["id"] for r in served["responses"]]
    assert flips == {"first", "second"}  # both orders were shown


def test_a_replayed_submit_returns_the_same_annotation_and_creates_nothing(api, project, member):
    item_id = serve(api, project, member)["id"]
    first = submit(api, item_id, {"choice": "tie"}, idempotency_key="abc", time_spent_ms=1200)
    again = submit(api, item_id, {"choice": "tie"}, idempotency_key="abc", time_spent_ms=1200)
    assert first.status_code == 201 and again.status_code == 200
    assert first.json()["id"] == again.json()["id"]
    assert Annotation.objects.count() == 1
    assert project.items.get(pk=item_id).annotations_count == 1


def test_a_key_used_on_another_item_is_refused_by_name_and_stores_nothing(api, project, member):
    first = serve(api, project, member)["id"]
    assert submit(api, first, {"choice": "tie"}, idempotency_key="k1").status_code == 201
    second = serve(api, project, member)["id"]  # a live lease on another item
    r = submit(api, second, {"choice": "A", "strength": "slight"}, idempotency_key="k1")
    assert r.status_code == 409 and r.json()["field"] == "idempotency_key"
    assert Annotation.objects.count() == 1
    assert project.items.get(pk=second).annotations_count == 0
    assert submit(api, second, {"choice": "A", "strength": "slight"}, idempotency_key="k2").status_code == 201


def test_the_submit_answer_carries_the_serializer_fields_as_drf_writes_them(api, project, member):
    from rest_framework import serializers

    from annotation.api.serializers import AnnotationSerializer

    item_id = serve(api, project, member)["id"]
    body = submit(api, item_id, {"choice": "B", "strength": "better"}, idempotency_key="x", time_spent_ms=5).json()
    annotation = Annotation.objects.get(pk=body["id"])
    by_fields = serializers.ModelSerializer.to_representation(AnnotationSerializer(), annotation)
    assert body == dict(by_fields) == AnnotationSerializer(annotation).data
    assert body["created_at"].endswith("Z") and body["item"] == item_id


def test_a_second_submit_without_a_key_is_a_conflict_not_a_duplicate(api, project, member):
    item_id = serve(api, project, member)["id"]
    assert submit(api, item_id, {"choice": "tie"}).status_code == 201
    r = submit(api, item_id, {"choice": "A", "strength": "slight"})
    assert r.status_code == 409 and "edit" in r.json()["detail"]
    assert Annotation.objects.count() == 1


@pytest.mark.parametrize("payload, field", [
    ({"choice": "C"}, "payload.choice"),
    ({"choice": "A"}, "payload.strength"),
    ({"choice": "A", "strength": "huge"}, "payload.strength"),
    ({"choice": "tie", "strength": "slight"}, "payload.strength"),
    ({"choice": "A", "strength": "slight", "criteria": {"style": "A"}}, "payload.criteria.style"),
    ({"choice": "A", "strength": "slight", "extra": 1}, "payload.extra"),
    ({"choice": "A", "strength": "slight", "comment": 5}, "payload.comment"),
    ("A", "payload"),
])
def test_a_bad_pairwise_payload_names_the_field_and_stores_nothing(api, project, member, payload, field):
    item_id = serve(api, project, member)["id"]
    r = submit(api, item_id, payload)
    assert r.status_code == 400
    assert field in r.json()["errors"]
    assert Annotation.objects.count() == 0


def test_rating_payload_is_checked_against_the_scale_and_flags(api):
    project = make_project("rating", criteria=["accuracy"])
    make_item(project)
    rater = add_member(project, UserFactory())
    item_id = serve(api, project, rater)["id"]
    assert "payload.overall" in submit(api, item_id, {"overall": 8}).json()["errors"]
    assert "payload.flags" in submit(api, item_id, {"overall": 3, "flags": ["nope"]}).json()["errors"]
    r = submit(api, item_id, {"overall": 6, "criteria": {"accuracy": 5}, "flags": ["hallucination"]})
    assert r.status_code == 201
    assert r.json()["payload"]["overall"] == 6


def test_ranking_must_order_each_response_once(api):
    project = make_project("ranking", k=4)
    make_item(project)
    rater = add_member(project, UserFactory())
    served = serve(api, project, rater)
    ids = [r["id"] for r in served["responses"]]
    bad = submit(api, served["id"], {"order": [[ids[0]], [ids[1]], [ids[1]]]})
    assert bad.status_code == 400 and "payload.order" in bad.json()["errors"]
    good = submit(api, served["id"], {"order": [[ids[2]], [ids[0], ids[3]], [ids[1]]]})
    assert good.status_code == 201
    assert good.json()["payload"]["order"] == [[ids[2]], [ids[0], ids[3]], [ids[1]]]
    none = make_item(project)
    assert submit(api, none.pk, {"not_rankable": True}).status_code == 201


def test_a_rater_edits_their_last_annotation_within_the_window(api, project, member):
    served = serve(api, project, member)
    ann = submit(api, served["id"], {"choice": "A", "strength": "slight"}).json()
    r = api.patch(f"/api/v1/annotations/{ann['id']}/", {"payload": {"choice": "B", "strength": "better"}}, format="json")
    assert r.status_code == 200
    assert Annotation.objects.get(pk=ann["id"]).payload["chosen"] == served["responses"][1]["id"]
    Annotation.objects.filter(pk=ann["id"]).update(created_at=timezone.now() - timedelta(hours=2))
    late = api.patch(f"/api/v1/annotations/{ann['id']}/", {"payload": {"choice": "tie"}}, format="json")
    assert late.status_code == 409


def test_a_rater_cannot_read_or_edit_someone_elses_annotation(api, project, member):
    other = add_member(project, UserFactory())
    served = serve(api, project, other)
    ann = submit(api, served["id"], {"choice": "tie"}).json()
    api.force_authenticate(member)
    assert api.get(f"/api/v1/annotations/{ann['id']}/").status_code == 404
    assert api.patch(f"/api/v1/annotations/{ann['id']}/", {"payload": {"choice": "A"}}, format="json").status_code == 404


def test_gold_misses_pause_the_rater_and_an_admin_can_lift_it(api, admin, django_capture_on_commit_callbacks):
    project = make_project("pairwise", overlap=1, gold_rate=1.0, gold_min_items=3, gold_min_accuracy=0.7)
    golds = [make_item(project) for _ in range(4)]
    for item in golds:
        first = item.item_responses.first().response_id
        second = item.item_responses.last().response_id
        item.is_gold, item.gold_answer = True, {"outcome": "win", "chosen": first, "rejected": second}
        item.save()
    rater = add_member(project, UserFactory())
    for _ in range(3):
        with django_capture_on_commit_callbacks(execute=True):
            assignment = queue_next(rater=rater, project=project)
            wrong = "A" if assignment.display_order[0] != assignment.item.gold_answer["chosen"] else "B"
            annotation_submit(rater=rater, item_id=assignment.item_id, payload={"choice": wrong, "strength": "slight"})
    membership = Membership.objects.get(user=rater)
    assert membership.is_paused and "gold accuracy 0%" in membership.paused_reason
    api.force_authenticate(rater)
    r = api.get(f"/api/v1/projects/{project.pk}/next/")
    assert r.status_code == 403 and "gold accuracy" in r.json()["detail"]
    api.force_authenticate(admin)
    lift = api.patch(f"/api/v1/projects/{project.pk}/members/{rater.username}/", {"is_paused": False}, format="json")
    assert lift.status_code == 200 and lift.json()["is_paused"] is False
    api.force_authenticate(rater)
    assert api.get(f"/api/v1/projects/{project.pk}/next/").status_code == 200
