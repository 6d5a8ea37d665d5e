"""The SFT method trains on written answers: a demonstration project annotated through the API, frozen as an sft
snapshot (by hand or by the run itself), trained by a real worker on the tiny model."""
from __future__ import annotations

import io
import json

import pytest

from annotation.models import Item
from tests.factories import UserFactory, add_member
from tests.helpers import wait_finished
from training.models import DatasetSnapshot, TrainingRun

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

SMALL = {"max_steps": 2, "batch_size": 2, "max_length": 64, "logging_steps": 1}


def demonstration_project(api, admin, n=6):
    api.force_authenticate(admin)
    project = api.post("/api/v1/projects/", {"name": "Answers", "mode": "demonstration"}, format="json").json()
    rows = [{"id": f"q{i}", "prompt": f"Tell me about topic {i}.",
             **({"responses": [f"Topic {i} is a thing."]} if i % 2 else {})} for i in range(n)]
    upload = io.BytesIO("".join(json.dumps(r) + "\n" for r in rows).encode())
    upload.name = "rows.jsonl"
    r = api.post(f"/api/v1/projects/{project['id']}/import/", {"file": upload}, format="multipart")
    assert r.status_code == 201, r.content
    rater = UserFactory()
    api.post(f"/api/v1/projects/{project['id']}/members/", {"username": rater.username}, format="json")
    api.force_authenticate(rater)
    while (r := api.get(f"/api/v1/projects/{project['id']}/next/")).status_code == 200:
        item = r.json()["item"]
        payload = {"text": f"Thank you for asking: here is a careful note about item {item['id']}."}
        if item["responses"]:
            payload["draft"] = "A"
        assert api.post(f"/api/v1/items/{item['id']}/annotations/", {"payload": payload}, format="json").status_code == 201
    api.force_authenticate(admin)
    return project


def test_an_sft_run_trains_on_a_snapshot_of_demonstrations(api, admin, worker):
    project = demonstration_project(api, admin)
    r = api.post("/api/v1/snapshots/", {"project": project["id"], "kind": "sft", "style": "conversational"},
                 format="json")
    assert r.status_code == 201, r.content
    snapshot = r.json()
    assert snapshot["kind"] == "sft" and snapshot["row_count"] == 6
    assert snapshot["counts"]["origin_scratch"] == 3 and snapshot["counts"]["origin_edited"] == 3

    bad = api.post("/api/v1/runs/", {"method": "dpo", "base_model": "tiny", "snapshot": snapshot["id"]}, format="json")
    assert bad.status_code == 400 and bad.json()["field"] == "snapshot"

    r = api.post("/api/v1/runs/", {"method": "sft", "base_model": "tiny", "snapshot": snapshot["id"],
                                   "config": SMALL}, format="json")
    assert r.status_code == 202, r.content
    run = wait_finished(TrainingRun.objects.get(pk=r.json()["id"]), worker=worker)
    assert run.status == "succeeded", run.error
    assert run.result["train_rows"] + run.result["eval_rows"] == 6
    assert run.checkpoints.filter(step=2).exists()


def test_an_sft_run_on_the_project_freezes_its_written_answers(api, admin, worker):
    project = demonstration_project(api, admin, n=4)
    r = api.post("/api/v1/runs/", {"method": "sft", "base_model": "tiny", "project": project["id"],
                                   "config": SMALL}, format="json")
    assert r.status_code == 202, r.content
    run = wait_finished(TrainingRun.objects.get(pk=r.json()["id"]), worker=worker)
    assert run.status == "succeeded", run.error
    assert run.snapshot.kind == "sft" and run.snapshot.row_count == 4
