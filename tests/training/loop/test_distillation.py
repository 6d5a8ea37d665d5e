"""Distillation as one action, end to end: a teacher (a checkpoint of the tiny model, or a loopback chat endpoint)
answers a project's prompts on a worker, the answers become an sft snapshot and the student trains on them; the
lineage is on the checkpoint's and the run's API and pages."""
from __future__ import annotations

import json

import pytest

from tests.helpers import LoopbackChat, make_snapshot, prompts_project, wait_finished
from training import services
from training.endpoints import endpoint_register
from training.models import Distillation

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

SFT = {"max_steps": 2, "batch_size": 2, "max_length": 64}


def wait_distillation(distillation_id, worker, timeout=240):
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        d = Distillation.objects.get(pk=distillation_id)
        if d.status in ("succeeded", "failed"):
            return d
        time.sleep(0.3)
    pytest.fail(f"distillation {distillation_id} still {d.status}\n{worker.log_tail()}")


def teacher_checkpoint(project, worker):
    run, _ = services.run_create(method="sft", base_model=services.base_model_get(name="tiny"),
                                 snapshot=make_snapshot(project), config=SFT)
    run = wait_finished(run, worker=worker)
    assert run.status == "succeeded", run.error
    return run.checkpoints.get()


@pytest.mark.slow
def test_a_checkpoint_is_distilled_into_a_base_model_and_the_lineage_shows(worker, api, admin, client):
    prompts = prompts_project(4)
    teacher = teacher_checkpoint(prompts, worker)
    api.force_authenticate(admin)
    r = api.post("/api/v1/distillations/", {"teacher": {"checkpoint": teacher.pk}, "student": "tiny",
                                            "project": prompts.pk, "max_new_tokens": 12, "config": SFT},
                 format="json")
    assert r.status_code == 201, r.content
    body = r.json()
    assert body["status"] == "generating" and body["teacher"]["checkpoint"] == teacher.pk
    d = wait_distillation(body["id"], worker)
    assert d.status == "succeeded", d.error
    assert d.generate_run.source_checkpoint_id == teacher.pk
    assert d.snapshot.kind == "sft" and d.snapshot.row_count == 4 and d.snapshot.counts == {"origin_teacher": 4}
    rows = [json.loads(line) for line in open(services.data_path(d.snapshot.path))]
    assert {r["origin"] for r in rows} == {"teacher"} and rows[0]["messages"][-1]["role"] == "assistant"
    assert rows[0]["source"] == d.teacher_label
    assert d.run.method == "sft" and d.run.base_model.name == "tiny" and d.run.snapshot_id == d.snapshot_id
    student = d.run.checkpoints.get()
    assert api.get(f"/api/v1/distillations/{d.pk}/").json()["checkpoints"] == [student.pk]

    client.force_login(admin)  # the lineage on the pages: teacher -> snapshot -> run -> student checkpoint
    page = client.get(f"/manage/training/runs/{d.run_id}/").content.decode()
    assert f"distillation {d.pk}" in page.lower() and d.teacher_label in page
    page = client.get(f"/manage/training/runs/{teacher.run_id}/").content.decode()
    assert f"distilled into tiny" in page.lower()


def test_a_chat_endpoint_is_distilled_into_the_tiny_model(worker, api, admin):
    prompts = prompts_project(4)
    with LoopbackChat(lambda body: "A patient teacher's answer to: " + body["messages"][-1]["content"]) as server:
        endpoint_register(name="teacher-x", api_base=server.base, model="big-model")
        api.force_authenticate(admin)
        r = api.post("/api/v1/distillations/", {"teacher": {"endpoint": "teacher-x"}, "student": "tiny",
                                                "project": prompts.pk, "config": SFT, "temperature": 0.2},
                     format="json")
        assert r.status_code == 201, r.content
        d = wait_distillation(r.json()["id"], worker)
    assert d.status == "succeeded", d.error
    assert len(server.requests) == 4 and server.requests[0]["body"]["temperature"] == 0.2
    assert d.job.status == "succeeded" and d.generate_run is None
    rows = [json.loads(line) for line in open(services.data_path(d.snapshot.path))]
    assert all(r["messages"][-1]["content"].startswith("A patient teacher's answer to: Tell me about") for r in rows)
    assert d.run.status == "succeeded" and d.run.checkpoints.exists()
