"""Loop API (admins only, clear field errors) and the chat-endpoint judge against a small OpenAI-compatible server
on 127.0.0.1 started by the test. No worker: the job's worker function runs in the test process."""
from __future__ import annotations

import json
import re

import pytest
from django.urls import reverse

from annotation.models import Annotation, Item, Response
from annotation.quality import judge_agreement
from tests.factories import UserFactory, add_member, make_project
from tests.helpers import LoopbackChat, annotated_project
from training import services
from training.judge import judge_run
from training.models import Checkpoint, ProjectJob, Round, TrainingRun
from training.tasks import project_job_task

from tests.helpers import prompts_project

pytestmark = pytest.mark.django_db


def polite_judge(garbage_every: int = 0):
    """A chat judge's answers that prefer the response starting with "Thank you"; every ``garbage_every``-th is
    unreadable."""
    count = 0

    def reply(body):
        nonlocal count
        count += 1
        text = body["messages"][-1]["content"]
        a = re.search(r"\[Response A\]\n(.*?)\n\[End of response A\]", text, re.S).group(1)
        choice = "A" if a.startswith("Thank you") else "B"
        if garbage_every and count % garbage_every == 0:
            return "I cannot decide."
        return json.dumps({"choice": choice, "strength": "better", "reason": "It is polite."})

    return reply


@pytest.fixture
def chat_settings(settings):
    settings.PS_JUDGE_API_KEY = "sk-local-test"
    settings.PS_JUDGE_MODEL = "local-judge"
    return settings


def test_chat_judge_annotates_pairs_through_the_endpoint(chat_settings, admin):
    project, human = annotated_project(16)  # the odds that all 16 show the polite answer on one side: 2**-15
    project.guidelines = "Prefer polite answers."
    project.save()
    with LoopbackChat(polite_judge(garbage_every=6)) as server:
        chat_settings.PS_JUDGE_API_BASE = server.base
        job = judge_run(project=project, judge="api", limit=16, created_by=admin)
        assert project_job_task(job.pk) == "succeeded"
        assert project_job_task(job.pk) is None  # a duplicate delivery does nothing

    job.refresh_from_db()
    assert job.result["annotations"] == 14 and job.result["unreadable"] == 2  # every 6th reply is garbage
    request = server.requests[0]
    assert request["path"] == "/v1/chat/completions" and request["auth"] == "Bearer sk-local-test"
    assert request["body"]["model"] == "local-judge"
    system = request["body"]["messages"][0]["content"]
    assert "impartial judge" in system and "Prefer polite answers." in system
    # The polite response was shown on both sides across items (a random side per item).
    sides = {re.search(r"\[Response A\]\n(.*?)\n", r["body"]["messages"][1]["content"]).group(1).startswith("Thank")
             for r in server.requests}
    assert sides == {True, False}

    judged = Annotation.objects.filter(item__project=project, source="judge").select_related("rater")
    assert {a.rater.username for a in judged} == {"judge:local-judge"}
    assert all(Response.objects.get(pk=a.payload["chosen"]).text.startswith("Thank") for a in judged)
    assert all(a.payload["strength"] == "better" and a.payload["comment"] == "It is polite." for a in judged)
    assert Item.objects.filter(project=project, annotations_count=1).count() == 16  # humans' counts only
    (figures,) = judge_agreement(project)
    assert figures["agreement_with_humans"] == 1.0 and figures["vs_majority"]["percent_agreement"] == 1.0


def test_chat_judge_failures_are_reported(chat_settings, admin):
    project, _ = annotated_project(4)
    with LoopbackChat(status=500) as server:
        chat_settings.PS_JUDGE_API_BASE = server.base
        job = judge_run(project=project, judge="api", limit=10)
        assert project_job_task(job.pk) == "failed"
    job.refresh_from_db()
    assert "failed 3 times" in job.error and "500" in job.error
    assert not Annotation.objects.filter(source="judge").exists()


def test_judge_needs_a_configured_endpoint_and_a_pairwise_project(settings, admin, api):
    settings.PS_JUDGE_API_BASE = ""
    project = make_project("pairwise")
    api.force_authenticate(admin)
    body = api.post(reverse("api-judge", args=[project.pk]), {"api": True}, format="json").json()
    assert body["field"] == "judge" and "PS_JUDGE_API_BASE" in body["detail"]
    settings.PS_JUDGE_API_BASE, settings.PS_JUDGE_MODEL = "http://127.0.0.1:9/v1", "m"
    rating = make_project("rating")
    response = api.post(reverse("api-judge", args=[rating.pk]), {"api": True}, format="json")
    assert response.status_code == 400 and response.json()["field"] == "judge"
    response = api.post(reverse("api-judge", args=[project.pk]), {"limit": 0, "api": True}, format="json")
    assert response.status_code == 400 and "limit" in response.json()


def _checkpoint(method="dpo", tmp_path=None) -> Checkpoint:
    run = TrainingRun.objects.create(method=method, base_model=services.base_model_get(name="tiny"),
                                     status="succeeded")
    path = tmp_path / f"ckpt-{run.pk}"
    path.mkdir()
    return Checkpoint.objects.create(run=run, step=1, path=str(path), kind="lora")


def test_loop_api_launches_rounds_and_names_bad_fields(admin, api, tmp_path):
    source = prompts_project(3)
    checkpoint = _checkpoint(tmp_path=tmp_path)
    api.force_authenticate(admin)
    url = reverse("api-rounds", args=[source.pk])

    response = api.post(url, {"sources": [{"base_model": "tiny"}, {"checkpoint": checkpoint.pk}], "n": 1,
                              "temperature": 0.5, "max_new_tokens": 16}, format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["status"] == "generating" and body["name"] == f"round-{body['id']}"
    assert [s["kind"] for s in body["sources"]] == ["base_model", "checkpoint"]
    assert all(s["run_status"] == "queued" for s in body["sources"])
    runs = TrainingRun.objects.filter(method="generate").order_by("id")
    assert runs[1].source_checkpoint == checkpoint and runs[1].config["generate"]["temperature"] == 0.5
    assert api.get(reverse("api-round", args=[body["id"]])).json()["id"] == body["id"]
    assert [r["id"] for r in api.get(url).json()] == [body["id"]]

    for payload, field in [
        ({"sources": []}, "sources"),
        ({"sources": [{"model": "x"}]}, "sources"),
        ({"sources": [{"base_model": "tiny"}], "n": 0}, "n"),
        ({"sources": [{"base_model": "tiny"}], "top_p": 0}, "top_p"),
        ({"sources": [{"base_model": "tiny"}], "n": 1}, "n"),  # a pair needs two responses a prompt
        ({"sources": [{"base_model": "tiny"}, {"base_model": "tiny"}]}, "sources"),
    ]:
        response = api.post(url, payload, format="json")
        assert response.status_code == 400, payload
        data = response.json()
        assert data.get("field") == field or field in data, (payload, data)
    response = api.post(url, {"sources": [{"base_model": "nope"}]}, format="json")
    assert response.status_code == 400 and response.json()["field"] == "sources[0]"
    reward = _checkpoint("reward", tmp_path)
    response = api.post(url, {"sources": [{"checkpoint": reward.pk}]}, format="json")
    assert response.status_code == 400 and "reward model" in response.json()["detail"]

    # A human evaluation round: a dedicated blind pairwise project with the source's raters.
    rater = add_member(source, UserFactory())
    response = api.post(reverse("api-human-eval", args=[checkpoint.pk]), {"project": source.pk, "max_prompts": 2},
                        format="json")
    assert response.status_code == 201, response.json()
    rnd = Round.objects.get(pk=response.json()["id"])
    assert rnd.kind == "human_eval" and rnd.project.mode == "pairwise" and rnd.project.members.get() == rater
    result = api.get(reverse("api-human-eval", args=[checkpoint.pk])).json()
    assert result["n"] == 0 and result["win_rate"] is None and result["rounds"][0]["id"] == rnd.pk
    checkpoint.refresh_from_db()
    assert checkpoint.evaluation["human_win_rate"]["status"] == "waiting"
    response = api.post(reverse("api-human-eval", args=[checkpoint.pk]),
                        {"project": source.pk, "eval_project": make_project("rating").pk}, format="json")
    assert response.status_code == 400 and response.json()["field"] == "eval_project"


def test_raters_and_strangers_reach_none_of_the_loop_endpoints(api, tmp_path):
    project = prompts_project(2, active_learning=True)
    member = add_member(project, UserFactory())
    checkpoint = _checkpoint(tmp_path=tmp_path)
    rnd = Round.objects.create(project=project, prompts_project=project, name="round-x")
    job = ProjectJob.objects.create(project=project, kind="judge")
    endpoints = [
        ("post", reverse("api-rounds", args=[project.pk]), {"sources": [{"base_model": "tiny"}]}),
        ("get", reverse("api-rounds", args=[project.pk]), None),
        ("get", reverse("api-round", args=[rnd.pk]), None),
        ("post", reverse("api-human-eval", args=[checkpoint.pk]), {"project": project.pk}),
        ("get", reverse("api-human-eval", args=[checkpoint.pk]), None),
        ("post", reverse("api-judge", args=[project.pk]), {"checkpoint": checkpoint.pk}),
        ("get", reverse("api-judge", args=[project.pk]), None),
        ("post", reverse("api-active-learning", args=[project.pk]), {}),
        ("delete", reverse("api-active-learning", args=[project.pk]), None),
        ("get", reverse("api-job", args=[job.pk]), None),
    ]
    for user, allowed in ((member, (403,)), (UserFactory(), (403, 404)), (None, (401, 403))):
        api.force_authenticate(user)
        for method, url, data in endpoints:
            response = getattr(api, method)(url, data, format="json")
            assert response.status_code in allowed, (user, method, url, response.status_code)
    assert Round.objects.count() == 1 and ProjectJob.objects.count() == 1 and not TrainingRun.objects.filter(method="generate").exists()


def test_active_learning_api_refuses_when_off_and_clears_priorities(admin, api):
    project = prompts_project(2)
    api.force_authenticate(admin)
    response = api.post(reverse("api-active-learning", args=[project.pk]), {}, format="json")
    assert response.status_code == 409 and response.json()["field"] == "config.active_learning"
    Item.objects.filter(project=project).update(priority=-250)
    response = api.delete(reverse("api-active-learning", args=[project.pk]))
    assert response.json() == {"items_reset": 2}
    assert set(Item.objects.filter(project=project).values_list("priority", flat=True)) == {0}


def test_a_registered_chat_endpoint_judges_by_its_name(admin, api):
    from training.endpoints import endpoint_register

    project, _ = annotated_project(6)
    api.force_authenticate(admin)
    url = reverse("api-judge", args=[project.pk])
    assert api.post(url, {"endpoint": "nowhere"}, format="json").json()["field"] == "endpoint"
    assert api.post(url, {"endpoint": "x", "api": True}, format="json").status_code == 400
    with LoopbackChat(polite_judge()) as server:
        endpoint_register(name="house-judge", api_base=server.base, model="judge-7b")
        response = api.post(url, {"endpoint": "house-judge", "limit": 6}, format="json")
        assert response.status_code == 202 and response.json()["params"]["judge"] == "house-judge"
        assert project_job_task(response.json()["id"]) == "succeeded"
    assert {r["body"]["model"] for r in server.requests} == {"judge-7b"}
    judged = Annotation.objects.filter(item__project=project, source="judge")
    assert judged.count() == 6 and {a.rater.username for a in judged} == {"judge:house-judge"}
