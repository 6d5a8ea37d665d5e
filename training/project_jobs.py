"""Project jobs (AI judge, active-learning scoring): queue one, claim it in a Celery worker, do the work, record
the outcome. The work itself is the feature's own (``training.judge``, ``training.active_learning``); this module
is what they share. Scoring with a reward checkpoint happens in a child process (the engine's ``score`` method),
so the worker never imports torch.
"""
from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Callable, Iterable

from django.db import transaction
from django.utils import timezone

from annotation.errors import Conflict, Invalid

from . import outbox, services
from .models import Checkpoint, ProjectJob, TrainingRun
from .runner import EngineProcess, engine_command

logger = logging.getLogger(__name__)
Status = ProjectJob.Status


def job_queue(job: ProjectJob) -> None:
    """Queue the job's task once the transaction commits: on `training` when a reward model scores (it needs the
    model's hardware), else on `default`."""
    outbox.send(outbox.PROJECT_JOB, [job.pk], queue="training" if job.reward_checkpoint_id else "default")


def job_open(project, kind: str, **match) -> ProjectJob | None:
    """A queued or running job of this kind on the project (a double submit gets it back)."""
    return ProjectJob.objects.filter(project=project, kind=kind, status__in=[Status.QUEUED, Status.RUNNING],
                                     **match).first()


def job_claim(*, job_id: int) -> ProjectJob | None:
    """queued -> running, or None when the job is not ours to start (a duplicate delivery)."""
    with transaction.atomic():
        job = ProjectJob.objects.select_for_update().filter(pk=job_id).first()
        if job is None or job.status != Status.QUEUED:
            logger.info("job %s: not queued (%s); nothing to do", job_id, job and job.status)
            return None
        job.status, job.started_at, job.error = Status.RUNNING, timezone.now(), ""
        job.save(update_fields=["status", "started_at", "error"])
    return ProjectJob.objects.select_related("project", "reward_checkpoint", "reward_checkpoint__run",
                                             "reward_checkpoint__run__base_model").get(pk=job_id)


def job_progress(job: ProjectJob, step: int, total: int) -> None:
    ProjectJob.objects.filter(pk=job.pk).update(step=step, total_steps=total)


def job_execute(*, job_id: int, work: dict[str, Callable[..., dict]]) -> str | None:
    """Run one project job to its end with ``work[job.kind](job=job)``, which returns the job's result; return the
    job's final status (None when it was not claimed)."""
    job = job_claim(job_id=job_id)
    if job is None:
        return None
    try:
        result = work[job.kind](job=job)
    except Exception as exc:  # any failure ends the job with a message, never a stuck row
        logger.exception("job %s failed", job.pk)
        ProjectJob.objects.filter(pk=job.pk).update(status=Status.FAILED, error=str(exc)[:5000],
                                                    finished_at=timezone.now())
        return Status.FAILED
    ProjectJob.objects.filter(pk=job.pk).update(status=Status.SUCCEEDED, result=result, error="",
                                                finished_at=timezone.now())
    return Status.SUCCEEDED


def reward_scores(*, checkpoint: Checkpoint, rows: Iterable[dict], workdir: Path,
                  on_progress: Callable[[int, int], None] | None = None) -> dict[str, float]:
    """Scores of ``rows`` ({key, prompt, completion}) by a reward checkpoint, keyed by ``key``.

    Runs the engine's ``score`` method in its own process group and raises RuntimeError with its error on failure.
    """
    if workdir.exists():
        shutil.rmtree(workdir)  # a half-done earlier attempt
    workdir.mkdir(parents=True)
    count = 0
    with open(workdir / "input.jsonl", "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
            count += 1
    if not count:
        return {}
    config = {
        "method": "score",
        "output_dir": str(workdir),
        "reward_checkpoint": str(services.data_path(checkpoint.path)),
        "base_model": checkpoint.run.base_model.source,
        "data_dir": str(services.data_dir()),
        "dataset": str(workdir / "input.jsonl"),  # {key, prompt, completion} rows; scores go to scores.jsonl
        "batch_size": 32,
    }
    (workdir / "score-config.json").write_text(json.dumps(config, indent=2))
    engine = EngineProcess(engine_command(workdir / "score-config.json"))
    engine.start()

    def on_event(event: dict) -> None:
        if event["event"] == "progress" and on_progress:
            on_progress(int(event.get("step") or 0), int(event.get("total") or 0))

    outcome = engine.follow(on_event, lambda: False, tick_s=1.0)
    if not outcome.succeeded:
        raise RuntimeError(outcome.failure_message())
    scores = {}
    with open(workdir / "scores.jsonl", encoding="utf-8") as f:
        for line in f:
            if line.strip():
                row = json.loads(line)
                scores[row["key"]] = row["score"]
    return scores


def latest_reward_checkpoint(project) -> Checkpoint | None:
    """The newest checkpoint of a succeeded reward run trained on ``project`` (an adapter or a full model)."""
    return (
        Checkpoint.objects.filter(run__project=project, run__method=TrainingRun.Method.REWARD,
                                  run__status=TrainingRun.Status.SUCCEEDED)
        .select_related("run", "run__base_model")
        .order_by("-run__finished_at", "-run_id", "-step", "-id")
        .first()
    )


def check_reward_checkpoint(checkpoint, field: str = "reward_checkpoint") -> Checkpoint:
    if not isinstance(checkpoint, Checkpoint):
        raise Invalid("must be a reward checkpoint", field=field)
    if checkpoint.run.method != TrainingRun.Method.REWARD:
        raise Invalid(f"checkpoint {checkpoint.pk} is from a {checkpoint.run.method} run, not a reward run",
                           field=field)
    if not services.data_path(checkpoint.path).is_dir():
        raise Conflict(f"Checkpoint {checkpoint.pk}'s files are gone from {checkpoint.path}.", field=field)
    return checkpoint


def job_workdir(job: ProjectJob) -> Path:
    return services.data_dir() / "jobs" / f"job-{job.pk}"
