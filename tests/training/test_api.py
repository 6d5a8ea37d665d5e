"""The training API without a worker: who may do what, input errors, cancel/resume rules, the stale-run reaper."""
from __future__ import annotations

import io
import subprocess
import sys
import tarfile
from datetime import timedelta

import pytest
from django.utils import timezone

from tests.factories import AdminFactory
from training import outbox, services
from training.models import BaseModel, Checkpoint, OutboxMessage, TrainingRun

from tests.helpers import make_snapshot

pytestmark = pytest.mark.django_db


def post_run(api, **body):
    return api.post("/api/v1/runs/", body, format="json")


@pytest.fixture
def snapshot(db):
    return make_snapshot()


def test_only_admins_reach_training(api, rater, snapshot):
    run = TrainingRun.objects.create(method="dpo", base_model=services.base_model_get(name="tiny"), snapshot=snapshot)
    for url in ["/api/v1/runs/", f"/api/v1/runs/{run.pk}/", "/api/v1/base-models/"]:
        assert api.get(url).status_code in (401, 403)
    api.force_authenticate(rater)
    for url in ["/api/v1/runs/", f"/api/v1/runs/{run.pk}/", "/api/v1/base-models/"]:
        assert api.get(url).status_code == 403
    assert post_run(api, method="dpo", base_model="tiny", snapshot=snapshot.pk).status_code == 403
    assert api.post(f"/api/v1/runs/{run.pk}/cancel/").status_code == 403
    assert TrainingRun.objects.count() == 1 and TrainingRun.objects.get().status == "queued"


def test_admin_creates_a_queued_run_and_reads_it_back(api, admin, snapshot):
    api.force_authenticate(admin)
    response = post_run(api, method="dpo", base_model="tiny", snapshot=snapshot.pk, config={"max_steps": 5})
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["status"] == "queued" and body["base_model"] == "tiny" and body["config"] == {"max_steps": 5}
    detail = api.get(f"/api/v1/runs/{body['id']}/").json()
    assert detail["progress"] == 0.0 and detail["checkpoints"] == []
    listing = api.get("/api/v1/runs/?status=queued").json()
    assert [r["id"] for r in listing["results"]] == [body["id"]]
    assert "tiny" in [m["name"] for m in api.get("/api/v1/base-models/").json()]


@pytest.mark.parametrize(
    "body, field, words",
    [
        ({"config": {"max_stepz": 5}}, "config", "max_stepz"),
        ({"config": {"batch_size": 0}}, "config.batch_size", ">= 1"),
        ({"config": {"dpo": {"beta": -1}}}, "config.dpo.beta", "> 0"),
        ({"config": {"output_dir": "/etc"}}, "config", "output_dir"),
        ({"method": "ppo"}, "reward_checkpoint", "required"),
        ({"method": "grpo"}, "reward_checkpoint", "required"),
        ({"config": {"reward_base_model": "/etc"}}, "config", "reward_base_model"),
        ({"config": {"distributed": "zero3"}}, "config.distributed", "ddp or fsdp"),
        ({"config": {"sft": {"packing": True}, "adapter": "prompt_tuning"}, "method": "sft"}, "config.sft.packing",
         "prompt_tuning"),
        ({"base_model": "nope"}, "base_model", "nope"),
        ({"gpus": 0}, "gpus", ""),
    ],
)
def test_bad_run_input_names_the_field_and_stores_nothing(api, admin, snapshot, body, field, words):
    api.force_authenticate(admin)
    response = post_run(api, **{"method": "dpo", "base_model": "tiny", "snapshot": snapshot.pk, **body})
    assert response.status_code == 400, response.content
    data = response.json()
    assert data.get("field") == field or field in data  # a service error, or a serializer's field errors
    assert words in str(data)
    assert not TrainingRun.objects.exists()


def sent_runs() -> list[int]:
    """The runs the outbox holds a message for, in order."""
    return [m.args[0] for m in OutboxMessage.objects.filter(task=outbox.RUN_TRAIN).order_by("id")]


def test_a_replayed_create_with_an_idempotency_key_returns_the_first_run(api, admin, snapshot):
    api.force_authenticate(admin)
    body = {"method": "dpo", "base_model": "tiny", "snapshot": snapshot.pk, "config": {"max_steps": 5},
            "idempotency_key": "launch-1"}
    first = post_run(api, **body)
    again = post_run(api, **body)
    assert first.status_code == 202 and again.status_code == 200, again.content
    assert again.json()["id"] == first.json()["id"] and first.json()["idempotency_key"] == "launch-1"
    assert TrainingRun.objects.count() == 1 and sent_runs() == [first.json()["id"]]

    # another key, or no key, is another run; the same key from another admin is that admin's own run
    assert post_run(api, **{**body, "idempotency_key": "launch-2"}).status_code == 202
    assert post_run(api, **{k: v for k, v in body.items() if k != "idempotency_key"}).status_code == 202
    assert post_run(api, **{k: v for k, v in body.items() if k != "idempotency_key"}).status_code == 202
    other = AdminFactory()
    api.force_authenticate(other)
    assert post_run(api, **body).status_code == 202
    assert TrainingRun.objects.count() == 5 and len(sent_runs()) == 5

    # the key reused for a different run is a conflict; an over-long key is refused
    api.force_authenticate(admin)
    conflict = post_run(api, **{**body, "method": "sft"})
    assert conflict.status_code == 409 and conflict.json()["field"] == "idempotency_key"
    too_long = post_run(api, **{**body, "idempotency_key": "k" * 101})
    assert too_long.status_code == 400 and "idempotency_key" in too_long.json()
    assert TrainingRun.objects.count() == 5


def test_the_idempotency_key_is_unique_per_creator_in_the_database(admin, snapshot, monkeypatch):
    from django.db import IntegrityError, transaction

    tiny = services.base_model_get(name="tiny")
    TrainingRun.objects.create(method="dpo", base_model=tiny, snapshot=snapshot, project=snapshot.project,
                               created_by=admin, idempotency_key="k")
    TrainingRun.objects.create(method="dpo", base_model=tiny, snapshot=snapshot, created_by=admin)
    TrainingRun.objects.create(method="dpo", base_model=tiny, snapshot=snapshot, created_by=admin)  # blank: no limit
    with pytest.raises(IntegrityError), transaction.atomic():
        TrainingRun.objects.create(method="dpo", base_model=tiny, snapshot=snapshot, created_by=admin,
                                   idempotency_key="k")
    # a create that lost the race to a concurrent one with the same key (it saw no earlier run) returns the winner
    real_replay = services._run_replay
    seen = []

    def not_yet_seen(*args, **kwargs):
        seen.append(1)
        return None if len(seen) == 1 else real_replay(*args, **kwargs)

    monkeypatch.setattr(services, "_run_replay", not_yet_seen)
    run, created = services.run_create(method="dpo", base_model=tiny, snapshot=snapshot, created_by=admin,
                                       idempotency_key="k")
    assert not created and run.idempotency_key == "k" and sent_runs() == []  # a replay sends nothing
    assert TrainingRun.objects.filter(idempotency_key="k").count() == 1


def test_a_run_needs_exactly_one_of_project_and_snapshot(api, admin, snapshot):
    api.force_authenticate(admin)
    neither = post_run(api, method="dpo", base_model="tiny")
    both = post_run(api, method="dpo", base_model="tiny", snapshot=snapshot.pk, project=snapshot.project_id)
    assert neither.status_code == both.status_code == 400
    assert neither.json()["field"] == "project"
    kto_snapshot = make_snapshot(kind="kto", rows=[{"prompt": "p", "completion": "c", "label": True}])
    wrong_kind = post_run(api, method="dpo", base_model="tiny", snapshot=kto_snapshot.pk)
    assert wrong_kind.status_code == 400 and wrong_kind.json()["field"] == "snapshot"
    assert post_run(api, method="dpo", base_model="tiny", snapshot=99999).status_code == 404


def test_a_grpo_run_with_a_reward_checkpoint_is_queued(api, admin, snapshot):
    tiny = services.base_model_get(name="tiny")
    reward_run = TrainingRun.objects.create(method="reward", base_model=tiny, snapshot=snapshot, status="succeeded")
    reward = Checkpoint.objects.create(run=reward_run, step=5, path="runs/r/checkpoint-5", kind="lora")
    api.force_authenticate(admin)
    response = post_run(api, method="grpo", base_model="tiny", snapshot=snapshot.pk, reward_checkpoint=reward.pk,
                        config={"grpo": {"num_generations": 4}})
    assert response.status_code == 202, response.content
    assert response.json()["method"] == "grpo" and response.json()["reward_checkpoint"] == reward.pk


def test_ppo_needs_a_reward_checkpoint_from_a_reward_run(api, admin, snapshot):
    tiny = services.base_model_get(name="tiny")
    dpo_run = TrainingRun.objects.create(method="dpo", base_model=tiny, snapshot=snapshot, status="succeeded")
    dpo_checkpoint = Checkpoint.objects.create(run=dpo_run, step=5, path="runs/x/checkpoint-5", kind="lora")
    api.force_authenticate(admin)
    response = post_run(api, method="ppo", base_model="tiny", snapshot=snapshot.pk, reward_checkpoint=dpo_checkpoint.pk)
    assert response.status_code == 400 and response.json()["field"] == "reward_checkpoint"
    assert "not a reward run" in response.json()["detail"]


def test_cancel_a_queued_run_at_once_and_refuse_to_cancel_a_finished_one(api, admin, snapshot):
    tiny = services.base_model_get(name="tiny")
    queued = TrainingRun.objects.create(method="dpo", base_model=tiny, snapshot=snapshot)
    done = TrainingRun.objects.create(method="dpo", base_model=tiny, snapshot=snapshot, status="succeeded")
    api.force_authenticate(admin)
    assert api.post(f"/api/v1/runs/{queued.pk}/cancel/").json()["status"] == "cancelled"
    assert api.post(f"/api/v1/runs/{queued.pk}/cancel/").status_code == 200  # twice is harmless
    response = api.post(f"/api/v1/runs/{done.pk}/cancel/")
    assert response.status_code == 409 and "succeeded" in response.json()["detail"]
    assert api.post("/api/v1/runs/424242/cancel/").status_code == 404


def test_resume_needs_a_failed_run_with_a_checkpoint_on_disk(api, admin, snapshot, tmp_path):
    tiny = services.base_model_get(name="tiny")
    running = TrainingRun.objects.create(method="dpo", base_model=tiny, snapshot=snapshot, status="running")
    failed = TrainingRun.objects.create(method="dpo", base_model=tiny, snapshot=snapshot, status="failed",
                                        config={"max_steps": 50}, metrics=[{"step": 5, "loss": 0.6}, {"step": 9, "loss": 0.5}])
    api.force_authenticate(admin)
    assert api.post(f"/api/v1/runs/{running.pk}/resume/").status_code == 409
    response = api.post(f"/api/v1/runs/{failed.pk}/resume/")
    assert response.status_code == 409 and "no checkpoint" in response.json()["detail"]

    directory = services.data_dir() / "runs" / f"resume-test-{failed.pk}" / "checkpoint-5"
    directory.mkdir(parents=True, exist_ok=True)
    checkpoint = Checkpoint.objects.create(run=failed, step=5, path=services.stored_path(directory), kind="lora")
    response = api.post(f"/api/v1/runs/{failed.pk}/resume/")
    assert response.status_code == 202
    body = response.json()
    assert body["resumed_from"] == checkpoint.pk and body["step"] == 5 and body["config"] == {"max_steps": 50}
    assert body["metrics"] == [{"step": 5, "loss": 0.6}]  # the series up to the checkpoint carries over


def test_stale_running_runs_are_reaped_as_failed():
    tiny = services.base_model_get(name="tiny")
    snapshot = make_snapshot()
    now = timezone.now()
    stale = TrainingRun.objects.create(method="dpo", base_model=tiny, snapshot=snapshot, status="running",
                                       worker="gpu-3", heartbeat_at=now - timedelta(seconds=600))
    alive = TrainingRun.objects.create(method="dpo", base_model=tiny, snapshot=snapshot, status="running",
                                       heartbeat_at=now - timedelta(seconds=5))
    assert services.runs_reap_stale(stale_after_s=300, now=now) == 1
    stale.refresh_from_db()
    alive.refresh_from_db()
    assert stale.status == "failed" and "gpu-3" in stale.error and "heartbeat" in stale.error
    assert alive.status == "running"
    assert services.runs_reap_stale(stale_after_s=300, now=now) == 0


def test_checkpoint_downloads_as_an_archive_of_its_files(api, admin, rater, snapshot):
    tiny = services.base_model_get(name="tiny")
    run = TrainingRun.objects.create(method="dpo", base_model=tiny, snapshot=snapshot, status="succeeded")
    directory = services.data_dir() / "runs" / f"download-test-{run.pk}" / "checkpoint-8"
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "adapter_config.json").write_text('{"r": 16}')
    (directory / "adapter_model.safetensors").write_bytes(b"\x00" * 70000)
    checkpoint = Checkpoint.objects.create(run=run, step=8, path=services.stored_path(directory), kind="lora")

    api.force_authenticate(rater)
    assert api.get(f"/api/v1/checkpoints/{checkpoint.pk}/download/").status_code == 403
    api.force_authenticate(admin)
    response = api.get(f"/api/v1/checkpoints/{checkpoint.pk}/download/")
    assert response.status_code == 200
    assert response["Content-Disposition"].endswith('.tar.gz"')
    archive = tarfile.open(fileobj=io.BytesIO(b"".join(response.streaming_content)), mode="r:gz")
    members = {m.name.split("/", 1)[1]: m for m in archive.getmembers()}
    assert set(members) == {"adapter_config.json", "adapter_model.safetensors"}
    assert archive.extractfile(members["adapter_config.json"]).read() == b'{"r": 16}'
    assert members["adapter_model.safetensors"].size == 70000

    detail = api.get(f"/api/v1/checkpoints/{checkpoint.pk}/").json()
    assert detail["kind"] == "lora" and detail["method"] == "dpo"


def test_merge_of_a_full_model_is_refused_and_a_double_merge_queues_once(api, admin, snapshot):
    tiny = services.base_model_get(name="tiny")
    run = TrainingRun.objects.create(method="dpo", base_model=tiny, snapshot=snapshot, status="succeeded")
    full = Checkpoint.objects.create(run=run, step=8, path="runs/none/checkpoint-8", kind="full")
    api.force_authenticate(admin)
    response = api.post(f"/api/v1/checkpoints/{full.pk}/merge/")
    assert response.status_code == 409 and "not an adapter" in response.json()["detail"]


def test_base_models_register_a_local_directory_and_refuse_a_missing_one(api, admin, tmp_path):
    api.force_authenticate(admin)
    response = api.post("/api/v1/base-models/", {"name": "local", "source": str(tmp_path)}, format="json")
    assert response.status_code == 201
    missing = api.post("/api/v1/base-models/", {"name": "gone", "source": "/no/such/dir"}, format="json")
    assert missing.status_code == 400 and missing.json()["field"] == "source"
    again = api.post("/api/v1/base-models/", {"name": "local", "source": str(tmp_path)}, format="json")
    assert again.status_code == 409
    assert BaseModel.objects.filter(name__in=["local", "gone"]).count() == 1


def test_the_worker_side_never_imports_torch():
    code = (
        "import os, sys, django; os.environ['DJANGO_SETTINGS_MODULE'] = 'config.settings_test'; django.setup();"
        "import training.tasks, training.jobs, training.runner, training.services, training.api.views, training.snapshots;"
        "print(sorted(m for m in ('torch', 'transformers', 'trl', 'peft') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"


def test_cancelling_a_run_whose_worker_died_settles_it_at_once(api, admin, snapshot):
    tiny = services.base_model_get(name="tiny")
    orphan = TrainingRun.objects.create(method="dpo", base_model=tiny, snapshot=snapshot, status="running",
                                        heartbeat_at=timezone.now() - timedelta(hours=1))
    live = TrainingRun.objects.create(method="dpo", base_model=tiny, snapshot=snapshot, status="running",
                                      heartbeat_at=timezone.now())
    api.force_authenticate(admin)
    assert api.post(f"/api/v1/runs/{orphan.pk}/cancel/").json()["status"] == "cancelled"
    body = api.post(f"/api/v1/runs/{live.pk}/cancel/").json()
    assert body["status"] == "running" and body["cancel_requested"] is True  # its worker stops the engine


def test_a_long_metric_series_is_thinned_but_keeps_its_start_and_recent_points(snapshot):
    from training.jobs import METRICS_KEEP, METRICS_RECENT, RunRecorder
    from training.runner import EngineProcess

    run = TrainingRun.objects.create(method="dpo", base_model=services.base_model_get(name="tiny"), snapshot=snapshot,
                                     status="running")
    recorder = RunRecorder(run, EngineProcess(["true"]))
    for step in range(1, 5001):
        recorder.on_event({"event": "metrics", "step": step, "metrics": {"loss": 1 / step}})
    recorder.flush()
    run.refresh_from_db()
    steps = [m["step"] for m in run.metrics]
    assert len(steps) <= METRICS_KEEP and steps[0] == 1 and steps == sorted(steps)
    assert steps[-METRICS_RECENT:] == list(range(5001 - METRICS_RECENT, 5001))
