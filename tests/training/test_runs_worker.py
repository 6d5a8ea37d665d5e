"""Training runs end to end: a real Celery worker over Redis and PostgreSQL spawning the real engine."""
from __future__ import annotations

import io
import json
import os
import signal
import tarfile
import time
from pathlib import Path

import pytest

from training import services
from training.api.serializers import RunSerializer
from training.models import Checkpoint, TrainingRun
from training.tasks import run_train

from tests.helpers import annotated_project, group_alive, make_snapshot, start_worker, stop_worker, wait_finished, wait_for

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

SMALL = {"max_steps": 8, "batch_size": 4, "max_length": 64, "logging_steps": 1}
LONG = {"max_steps": 100000, "batch_size": 2, "max_length": 64, "logging_steps": 1}


def create_run(method="dpo", snapshot=None, config=None, **kwargs) -> TrainingRun:
    run, _ = services.run_create(
        method=method,
        base_model=services.base_model_get(name="tiny"),
        snapshot=snapshot or make_snapshot(),
        config=config if config is not None else dict(SMALL),
        **kwargs,
    )
    return run


def test_dpo_run_goes_from_queued_to_succeeded_with_metrics_and_an_adapter(worker):
    run = create_run("dpo")
    assert run.status == "queued"

    run = wait_finished(run, worker=worker)

    assert run.status == "succeeded", run.error
    assert run.step == run.total_steps == 8
    assert run.started_at and run.finished_at and run.worker
    losses = [m["loss"] for m in run.metrics if "loss" in m]
    assert len(losses) >= 4 and all(loss > 0 for loss in losses)
    assert [m["step"] for m in run.metrics] == sorted(m["step"] for m in run.metrics)
    assert run.result["final_loss"] is not None
    # How and on what it trained, on the run's API: one process, fp32 masters, every snapshot row accounted for.
    detail = RunSerializer(run).data
    assert detail["world_size"] == 1
    assert detail["dtype"] == {"weights": "fp32", "compute": "fp32", "base": "fp32"}
    stats = detail["data_stats"]
    assert stats["train_rows"] + stats["eval_rows"] + stats["dropped_too_long"] + stats["ties_excluded"] \
        == run.snapshot.row_count
    checkpoint = run.checkpoints.get(step=8)
    assert checkpoint.kind == "lora" and checkpoint.size_bytes > 0
    files = services.data_path(checkpoint.path)
    assert (files / "adapter_model.safetensors").is_file() and (files / "adapter_config.json").is_file()
    assert run.pid is None


@pytest.mark.slow
def test_reward_run_then_ppo_with_its_checkpoint(worker):
    snapshot = make_snapshot()
    reward_run = wait_finished(create_run("reward", snapshot, {**SMALL, "max_steps": 10}), worker=worker)
    assert reward_run.status == "succeeded", reward_run.error
    reward_checkpoint = reward_run.checkpoints.get()
    assert "eval_accuracy" in reward_checkpoint.metrics or "accuracy" in reward_checkpoint.metrics

    ppo_config = {"max_steps": 2, "max_length": 64,
                  "ppo": {"rollout_batch_size": 4, "mini_batch_size": 2, "max_new_tokens": 8, "ppo_epochs": 1}}
    ppo_run = wait_finished(create_run("ppo", snapshot, ppo_config, reward_checkpoint=reward_checkpoint), worker=worker)

    assert ppo_run.status == "succeeded", ppo_run.error
    assert ppo_run.step == 2
    assert ppo_run.checkpoints.filter(step=2).exists()
    assert ppo_run.metrics


def _wait_training(run, worker):
    """Until the engine has taken a few optimizer steps."""
    return wait_for(run, lambda r: r.status != "queued" and (r.step >= 3 or r.status in ("failed", "succeeded")),
                    worker=worker)


def test_cancel_mid_run_kills_the_engine_process_group(worker, admin, api):
    run = _wait_training(create_run("dpo", config=LONG), worker)
    assert run.status == "running" and run.pid
    pgid = run.pid
    assert group_alive(pgid)

    api.force_authenticate(admin)
    response = api.post(f"/api/v1/runs/{run.pk}/cancel/")
    assert response.status_code == 200 and response.json()["cancel_requested"] is True

    run = wait_finished(run, timeout=60, worker=worker)
    assert run.status == "cancelled"
    assert run.finished_at and not run.error
    assert not group_alive(pgid)
    assert 3 <= run.step < 100000


def test_engine_killed_with_sigkill_fails_the_run_with_a_message(worker):
    run = _wait_training(create_run("dpo", config=LONG), worker)
    assert run.status == "running"

    os.kill(run.pid, signal.SIGKILL)

    run = wait_finished(run, timeout=60, worker=worker)
    assert run.status == "failed"
    assert "killed by SIGKILL" in run.error
    assert run.finished_at


def test_the_same_task_delivered_twice_starts_one_engine(worker):
    mark = len(worker.log())  # ids come back on SQLite: an earlier test's run may have had this one's
    run = create_run("dpo")
    run_train.apply_async(args=[run.pk])  # a second delivery of the same run (as Redis redelivers)

    run = wait_finished(run, worker=worker)
    assert run.status == "succeeded", run.error

    # Both deliveries were handled: one started the engine, the other found the row taken.
    # The second delivery may wait behind other work on the worker: give it time.
    wait_for(run, lambda r: f"run {run.pk}: duplicate delivery" in worker.log()[mark:], timeout=120, worker=worker)
    log = worker.log()[mark:]
    assert log.count(f"run {run.pk}: engine started") == 1
    assert log.count(f"run {run.pk}: duplicate delivery") == 1
    assert run.checkpoints.count() == 1


@pytest.mark.slow
def test_a_cancelled_run_resumes_from_its_last_checkpoint(worker, admin, api):
    config = {**LONG, "max_steps": 400, "save_steps": 5}
    run = wait_for(create_run("dpo", config=config), lambda r: r.checkpoints.exists() or r.status in ("failed", "succeeded"),
                   worker=worker)
    services.run_cancel(run=run)
    run = wait_finished(run, timeout=60, worker=worker)
    assert run.status == "cancelled"
    last = run.checkpoints.order_by("-step").first()
    assert last.step >= 5

    api.force_authenticate(admin)
    response = api.post(f"/api/v1/runs/{run.pk}/resume/")
    assert response.status_code == 202, response.content
    again = api.post(f"/api/v1/runs/{run.pk}/resume/")  # a double click starts nothing more
    assert again.status_code == 200 and again.json()["id"] == response.json()["id"]

    resumed = TrainingRun.objects.get(pk=response.json()["id"])
    assert resumed.resumed_from_id == last.pk
    # Run it to the end, quicker: cancel it once it is past the checkpoint.
    resumed = wait_for(resumed, lambda r: r.step > last.step + 2 or r.status in ("failed", "succeeded"), worker=worker)
    first_steps = [m["step"] for m in resumed.metrics if m["step"] > last.step]
    services.run_cancel(run=resumed)
    resumed = wait_finished(resumed, timeout=60, worker=worker)
    assert resumed.status == "cancelled", resumed.error
    # It continued from the checkpoint's step, not from step 1.
    assert first_steps and min(first_steps) == last.step + 1
    assert "resume" in (services.run_output_dir(resumed) / "engine-config.json").read_text()


def _wait_checkpoint(checkpoint, until, timeout=180.0, worker=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        checkpoint.refresh_from_db()
        if until(checkpoint):
            return checkpoint
        time.sleep(0.3)
    pytest.fail(f"checkpoint {checkpoint.pk}: {checkpoint.evaluation} {checkpoint.export}\n{worker.log_tail() if worker else ''}")


@pytest.mark.slow
def test_checkpoints_are_evaluated_merged_and_downloaded(worker, admin, api):
    snapshot = make_snapshot()
    reward_run = wait_finished(create_run("reward", snapshot, {**SMALL, "max_steps": 10}), worker=worker)
    dpo_run = wait_finished(create_run("dpo", snapshot), worker=worker)
    assert reward_run.status == dpo_run.status == "succeeded"
    reward, policy = reward_run.checkpoints.get(), dpo_run.checkpoints.get()
    api.force_authenticate(admin)

    response = api.post(f"/api/v1/checkpoints/{reward.pk}/evaluate/", {"kind": "reward_accuracy"}, format="json")
    assert response.status_code == 202 and response.json()["evaluation"]["reward_accuracy"]["status"] == "queued"
    response = api.post(f"/api/v1/checkpoints/{policy.pk}/evaluate/",
                        {"kind": "win_rate", "reward_checkpoint": reward.pk,
                         "options": {"max_prompts": 6, "max_new_tokens": 8}}, format="json")
    assert response.status_code == 202, response.content
    assert api.post(f"/api/v1/checkpoints/{policy.pk}/merge/").status_code == 202

    reward = _wait_checkpoint(reward, lambda c: c.evaluation["reward_accuracy"]["status"] in ("succeeded", "failed"),
                              worker=worker)
    accuracy = reward.evaluation["reward_accuracy"]
    assert accuracy["status"] == "succeeded", accuracy.get("error")
    assert 0 <= accuracy["result"]["accuracy"] <= 1

    policy = _wait_checkpoint(policy, lambda c: c.evaluation["win_rate"]["status"] in ("succeeded", "failed")
                              and c.export["status"] in ("succeeded", "failed"), worker=worker)
    win = policy.evaluation["win_rate"]
    assert win["status"] == "succeeded", win.get("error")
    assert 0 <= win["result"]["win_rate"] <= 1
    assert policy.export["status"] == "succeeded", policy.export.get("error")
    merged = Checkpoint.objects.get(pk=policy.export["checkpoint"])
    assert merged.kind == "merged" and merged.step == policy.step
    assert (services.data_path(merged.path) / "model.safetensors").is_file()

    download = api.get(f"/api/v1/checkpoints/{merged.pk}/download/")
    assert download.status_code == 200
    archive = tarfile.open(fileobj=io.BytesIO(b"".join(download.streaming_content)), mode="r:gz")
    assert any(name.endswith("/model.safetensors") for name in archive.getnames())

    # an adapter's download holds what inference needs; its training state only when asked for
    def names(query=""):
        response = api.get(f"/api/v1/checkpoints/{policy.pk}/download/{query}")
        assert response.status_code == 200
        archive = tarfile.open(fileobj=io.BytesIO(b"".join(response.streaming_content)), mode="r:gz")
        return {Path(name).name: archive.extractfile(name) for name in archive.getnames() if archive.getmember(name).isfile()}

    files = names()
    assert {"adapter_model.safetensors", "adapter_config.json", "base_model.json"} <= set(files)
    assert "optimizer.pt" not in files and "trainer_state.json" not in files
    assert json.load(files["adapter_config.json"])["base_model_name_or_path"] == "tiny"
    assert {"optimizer.pt", "trainer_state.json"} <= set(names("?include=training_state"))
    response = api.get(f"/api/v1/checkpoints/{policy.pk}/download/?include=everything")
    assert response.status_code == 400 and "include" in response.json()["errors"]


def test_qlora_with_an_8bit_optimizer_trains_on_cpu(worker):
    run = wait_finished(create_run("dpo", config={**SMALL, "adapter": "qlora", "optim": "adamw_8bit"}), worker=worker)
    assert run.status == "succeeded", run.error
    assert run.checkpoints.get().kind == "lora"
    assert any("loss" in m for m in run.metrics)


def test_a_dead_worker_takes_its_engine_with_it_and_the_run_is_reaped(worker, tmp_path):
    """A worker killed outright (OOM killer, lost node) leaves its run `running`; the engine dies with it and the
    reaper marks the row failed once its heartbeat is stale."""
    doomed = start_worker(tmp_path / "doomed.log", queues="doomed", concurrency=1, pool="solo", name="doomed")
    try:
        run = _wait_training(create_run("dpo", config=LONG, queue="doomed"), doomed)
        assert run.status == "running" and run.worker.startswith("doomed")
        os.killpg(doomed.proc.pid, signal.SIGKILL)
        doomed.proc.wait(timeout=10)
        wait_for(run, lambda r: not group_alive(r.pid), timeout=10)  # the engine got SIGKILL too

        time.sleep(1.5)
        assert services.runs_reap_stale(stale_after_s=1) == 1
        run.refresh_from_db()
        assert run.status == "failed" and "stopped sending heartbeats" in run.error
    finally:
        stop_worker(doomed)


def test_train_command_waits_for_a_project_run_with_a_progress_bar(worker, capsys):
    from django.core.management import call_command

    project, _ = annotated_project(8)
    call_command("train", "--project", project.slug, "--method", "sft", "--base-model", "tiny",
                 "--config", '{"max_steps": 4, "batch_size": 2, "max_length": 64}', "--wait")
    out, err = capsys.readouterr()
    run = TrainingRun.objects.get(project=project)
    assert f"Run {run.pk} queued" in out and f"Run {run.pk} succeeded" in out
    assert "4/4" in err  # the progress bar reached the last step
    assert run.snapshot is not None and run.snapshot.project == project
