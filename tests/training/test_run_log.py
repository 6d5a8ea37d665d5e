"""A run page for people (issue 17): the log shows the engine's events in words; the trainer's progress bars and
library warnings go to a full log file that the page offers as a download."""
from __future__ import annotations

import pytest

from training import services
from training.run_log import RunLog

from tests.helpers import make_snapshot, wait_finished

T = 1_767_225_600.0  # a fixed time: the lines carry the site's clock time of each event


def test_events_become_sentences_and_the_rest_stays_out():
    log = RunLog()
    events = [
        {"event": "setup", "world_size": 1, "device": "cpu", "dtype": {"weights": "fp32", "compute": "fp32"},
         "time": T},
        {"event": "data_stats", "data_stats": {"train_rows": 640, "eval_rows": 72, "dropped_too_long": 8,
                                               "truncated": 0, "ties_excluded": 12}, "time": T},
        {"event": "started", "method": "dpo", "total_steps": 30, "time": T},
        *[{"event": "progress", "step": s, "total": 30, "eta_s": 1.0, "epoch": s / 10, "time": T + s}
          for s in range(1, 31)],
        {"event": "metrics", "step": 10, "metrics": {"loss": 0.69, "grad_norm": 1.2}, "time": T + 10},
        {"event": "metrics", "step": 20, "metrics": {"eval_loss": 0.6512, "eval_rewards/accuracies": 0.75,
                                                     "eval_runtime": 0.3}, "time": T + 20},
        {"event": "checkpoint", "step": 30, "path": "/x", "kind": "lora", "size_bytes": 34_816, "time": T + 31},
        {"event": "done", "result": {"step": 30}, "time": T + 32},
    ]
    for event in events:
        log.add(event)
    lines = [line.split(" ", 1)[1] for line in log.lines]  # without the clock time
    assert lines == [
        "Set up: 1 process on cpu, weights fp32, compute fp32.",
        "Data: 640 rows to train on, 72 held out; 8 dropped as too long, 12 ties left out.",
        "Training started: DPO for 30 steps.",
        "Epoch 1 done at step 10 of 30.",
        "Epoch 2 done at step 20 of 30.",
        "Epoch 3 done at step 30 of 30.",
        "Evaluation at step 20: loss 0.6512, rewards/accuracies 0.75.",
        "Checkpoint saved at step 30 (LoRA adapter, 34.8 KB).",
        "Finished: 30 steps in 32 s.",
    ]
    assert all(line[:8].count(":") == 2 for line in log.lines)


def test_an_error_a_cancel_and_a_crash_are_said_once():
    log = RunLog()
    log.add({"event": "started", "method": "kto", "total_steps": None, "time": T})
    log.add({"event": "error", "message": "ValueError: no rows", "traceback": "Traceback ...", "time": T + 1})
    log.ended(status="failed", reported_error=True, failure="The engine failed: ValueError: no rows")
    assert [line.split(" ", 1)[1] for line in log.lines] == ["Training started: KTO.", "Failed: ValueError: no rows."]
    crashed = RunLog()
    crashed.ended(status="failed", reported_error=False, failure="The engine was killed by SIGKILL.\n\nLast output:")
    assert crashed.lines[-1].endswith("Failed: The engine was killed by SIGKILL. (the full log has its last output).")
    cancelled = RunLog()
    cancelled.add({"event": "progress", "step": 7, "total": 100, "epoch": 0.07, "time": T})
    cancelled.ended(status="cancelled", reported_error=False)
    assert cancelled.lines[-1].endswith("Cancelled at step 7.")


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_real_run_logs_words_and_keeps_everything_in_its_full_log(worker, admin_client):
    run, _ = services.run_create(method="dpo", base_model=services.base_model_get(name="tiny"),
                                 snapshot=make_snapshot(), config={"max_steps": 6, "batch_size": 4, "max_length": 64,
                                                                   "logging_steps": 1, "eval_fraction": 0.25})
    run = wait_finished(run, worker=worker)
    assert run.status == "succeeded", run.error
    words = [line.split(" ", 1)[1] for line in run.log_tail.splitlines()]
    assert "Training started: DPO for 6 steps." in words and words[0].startswith("Set up: 1 process on cpu")
    assert any(w.startswith("Checkpoint saved at step 6 (LoRA adapter") for w in words)
    assert words[-1].startswith("Finished: 6 steps")
    assert not any(noise in run.log_tail for noise in ("it/s", "%|", "Warning", "warn", "{"))

    page = admin_client.get(f"/manage/training/runs/{run.pk}/").content.decode()
    assert "Training started: DPO for 6 steps." in page and f"/manage/training/runs/{run.pk}/log/" in page
    response = admin_client.get(f"/manage/training/runs/{run.pk}/log/")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/plain")
    assert f'filename="run-{run.pk}-engine.log"' in response["Content-Disposition"]
    full = b"".join(response.streaming_content).decode()
    assert '"event": "started"' in full and '"event": "done"' in full  # every line the engine printed


@pytest.mark.django_db
def test_a_run_whose_engine_never_started_has_no_full_log(admin_client, settings, tmp_path):
    settings.PS_DATA_DIR = tmp_path
    from training.models import BaseModel, TrainingRun

    tiny = BaseModel.objects.get_or_create(name="tiny", defaults={"source": "tiny"})[0]
    run = TrainingRun.objects.create(method="dpo", base_model=tiny, project=make_snapshot().project)
    page = admin_client.get(f"/manage/training/runs/{run.pk}/").content.decode()
    assert "/log/" not in page and "Nothing logged yet." in page
    assert admin_client.get(f"/manage/training/runs/{run.pk}/log/").status_code == 404
