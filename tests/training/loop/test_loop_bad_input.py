"""Critique-and-revise rounds and distillations refuse bad input with a 4xx naming the field, and are for admins
only: a rater gets 403, a round's chains included."""
from __future__ import annotations

import pytest

from tests.factories import UserFactory, add_member, make_project
from tests.helpers import make_snapshot, prompts_project
from training import services
from training.models import Checkpoint, Distillation, Round, TrainingRun

pytestmark = pytest.mark.django_db


def names(response, field) -> bool:
    """Whether a 400's body names ``field``: a service error's field, or a serializer's errors by field."""
    body = response.json()
    return body.get("field") == field or field in body.get("errors", {}) or field in body


@pytest.fixture
def prompts(db):
    return prompts_project(3)


@pytest.fixture
def reward_checkpoint(prompts, tmp_path):
    run = TrainingRun.objects.create(method="reward", base_model=services.base_model_get(name="tiny"),
                                     snapshot=make_snapshot(prompts), status="succeeded")
    return Checkpoint.objects.create(run=run, step=1, path=str(tmp_path), kind="lora")


@pytest.mark.parametrize("body, field", [
    ({"source": {"base_model": "nope"}}, "source"),
    ({"source": {"endpoint": "nowhere"}}, "source"),
    ({"source": {"colour": "red"}}, "source"),
    ({"source": {"base_model": "tiny"}, "constitution": 42}, "constitution"),
    ({"source": {"base_model": "tiny"}, "constitution": ["fine", ""]}, "constitution[1]"),
    ({"source": {"base_model": "tiny"}, "constitution": ["x" * 3000]}, "constitution[0]"),
    ({"source": {"base_model": "tiny"}, "spot_check": 2}, "spot_check"),
    ({"source": {"base_model": "tiny"}, "seed": -1}, "seed"),
    ({"source": {"base_model": "tiny"}, "max_new_tokens": 0}, "max_new_tokens"),
])
def test_a_bad_critique_round_is_refused_naming_the_field(api, admin, prompts, body, field):
    api.force_authenticate(admin)
    r = api.post(f"/api/v1/projects/{prompts.pk}/critique-revise/", body, format="json")
    assert r.status_code == 400, r.content
    assert names(r, field), r.content
    assert not Round.objects.exists()


def test_a_critique_round_needs_a_pairwise_target_and_a_writing_source(api, admin, prompts, reward_checkpoint):
    api.force_authenticate(admin)
    rating = make_project("rating")
    r = api.post(f"/api/v1/projects/{prompts.pk}/critique-revise/",
                 {"source": {"base_model": "tiny"}, "project": rating.pk}, format="json")
    assert r.status_code == 400 and r.json()["field"] == "project"
    r = api.post(f"/api/v1/projects/{prompts.pk}/critique-revise/",
                 {"source": {"checkpoint": reward_checkpoint.pk}}, format="json")
    assert r.status_code == 400 and r.json()["field"] == "source"
    empty = make_project("pairwise")
    r = api.post(f"/api/v1/projects/{empty.pk}/critique-revise/", {"source": {"base_model": "tiny"}}, format="json")
    assert r.status_code == 400 and r.json()["field"] == "project"


def test_raters_may_not_start_rounds_or_read_chains(api, admin, prompts):
    rater = add_member(prompts, UserFactory())
    api.force_authenticate(admin)
    r = api.post(f"/api/v1/projects/{prompts.pk}/critique-revise/", {"source": {"base_model": "tiny"}}, format="json")
    assert r.status_code == 201
    round_id = r.json()["id"]
    assert Round.objects.get(pk=round_id).params["constitution"]  # the built-in constitution
    api.force_authenticate(rater)
    assert api.post(f"/api/v1/projects/{prompts.pk}/critique-revise/", {"source": {"base_model": "tiny"}},
                    format="json").status_code == 403
    assert api.get(f"/api/v1/rounds/{round_id}/chains/").status_code == 403
    api.force_authenticate(None)
    assert api.get(f"/api/v1/rounds/{round_id}/chains/").status_code in (401, 403)


@pytest.mark.parametrize("body, field", [
    ({"teacher": {"base_model": "tiny"}, "student": "nobody"}, "student"),
    ({"teacher": {"endpoint": "nowhere"}, "student": "tiny"}, "teacher"),
    ({"teacher": "tiny", "student": "tiny"}, "teacher"),
    ({"teacher": {"base_model": "tiny"}, "student": "tiny", "config": {"max_steps": 0}}, "sft_config.max_steps"),
    ({"teacher": {"base_model": "tiny"}, "student": "tiny", "config": {"learning_rte": 1}}, "sft_config"),
    ({"teacher": {"base_model": "tiny"}, "student": "tiny", "temperature": -1}, "temperature"),
    ({"teacher": {"base_model": "tiny"}, "student": "tiny", "max_prompts": 0}, "max_prompts"),
])
def test_a_bad_distillation_is_refused_naming_the_field(api, admin, prompts, body, field):
    api.force_authenticate(admin)
    r = api.post("/api/v1/distillations/", {"project": prompts.pk, **body}, format="json")
    assert r.status_code == 400, r.content
    assert names(r, field), r.content
    assert not Distillation.objects.exists()


def test_a_distillation_needs_prompts_and_a_teacher_that_writes(api, admin, reward_checkpoint):
    api.force_authenticate(admin)
    empty = make_project("pairwise")
    r = api.post("/api/v1/distillations/", {"teacher": {"base_model": "tiny"}, "student": "tiny", "project": empty.pk},
                 format="json")
    assert r.status_code == 400 and r.json()["field"] == "project"
    r = api.post("/api/v1/distillations/", {"teacher": {"checkpoint": reward_checkpoint.pk}, "student": "tiny",
                                            "project": reward_checkpoint.run.project_id or empty.pk}, format="json")
    assert r.status_code == 400 and r.json()["field"] == "teacher"


def test_distillations_are_for_admins_only(api, admin, prompts):
    rater = add_member(prompts, UserFactory())
    api.force_authenticate(admin)
    r = api.post("/api/v1/distillations/", {"teacher": {"base_model": "tiny"}, "student": "tiny",
                                            "project": prompts.pk}, format="json")
    assert r.status_code == 201, r.content
    assert r.json()["status"] == "generating" and r.json()["generate_run"]
    api.force_authenticate(rater)
    assert api.get("/api/v1/distillations/").status_code == 403
    assert api.get(f"/api/v1/distillations/{r.json()['id']}/").status_code == 403
    assert api.post("/api/v1/distillations/", {"teacher": {"base_model": "tiny"}, "student": "tiny",
                                               "project": prompts.pk}, format="json").status_code == 403
