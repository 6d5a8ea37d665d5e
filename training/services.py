"""Writes for training: base models, runs (create, cancel, resume, reap), checkpoint merge and evaluation.

The web process never imports torch: configs are validated with the engine's plain dataclasses
(``training.engine.config``) and the work itself is sent to the workers on commit (``training.outbox``).
"""
from __future__ import annotations

import os
import re
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from annotation.errors import Conflict, Invalid
from annotation.models import Project

from . import outbox
from .engine.config import EvaluateSection, RunConfig
from .models import BaseModel, Checkpoint, DatasetSnapshot, TrainingRun

TINY = "tiny"
TINY_DESCRIPTION = "Built-in 2-layer Llama with a byte-level BPE tokenizer, built offline on first use."
SMALL = "small"
SMALL_DESCRIPTION = ("Built-in 6-layer Llama (5.8M parameters) pre-trained on the Python standard library's "
                     "documentation and instruction-tuned: short English answers in the chat format.")
BUILTIN_MODELS = {TINY: TINY_DESCRIPTION, SMALL: SMALL_DESCRIPTION}

# Keys of the engine config that the server fills in; a run's `config` may not set them.
SERVER_KEYS = ("method", "output_dir", "base_model", "data_dir", "dataset", "reward_checkpoint", "reward_base_model",
               "resume_from_checkpoint")
ONLINE_METHODS = ("ppo", "rloo", "grpo")  # need a reward checkpoint
TRAINING_STATUSES_OPEN = (TrainingRun.Status.QUEUED, TrainingRun.Status.RUNNING)
# Snapshot kinds each method can train on.
SNAPSHOT_KINDS = {
    "reward": ("trl",),
    "dpo": ("trl",),
    "sft": ("sft", "trl"),  # written answers; or the chosen side of preference pairs
    "ppo": ("trl",),
    "rloo": ("trl",),
    "grpo": ("trl",),
    "kto": ("kto", "trl"),  # preference rows are unpaired by the engine
}
MAX_GPUS = 64


# --- paths -------------------------------------------------------------------------------------


def data_dir() -> Path:
    return Path(settings.PS_DATA_DIR)


def data_path(path: str) -> Path:
    """An absolute path for a path stored relative to PS_DATA_DIR (absolute paths are kept)."""
    return data_dir() / path if not os.path.isabs(path) else Path(path)


def stored_path(path: str | os.PathLike) -> str:
    """The form a path is stored in: relative to PS_DATA_DIR when inside it, else absolute."""
    path = Path(path).resolve()
    try:
        return str(path.relative_to(data_dir().resolve()))
    except ValueError:
        return str(path)


def run_output_dir(run: TrainingRun) -> Path:
    """The run's own directory, named by its id and creation time: ids can come back (a database created
    again under the same data directory, SQLite after a flush), and a new run must never find another's files."""
    return data_dir() / "runs" / f"{run.pk}-{run.created_at:%Y%m%dT%H%M%S%f}"


# --- base models -------------------------------------------------------------------------------


def base_model_get(*, name: str) -> BaseModel:
    """A registered base model by name; the built-in ``tiny`` and ``small`` ones are registered on first use."""
    if name in BUILTIN_MODELS:
        model, _ = BaseModel.objects.get_or_create(name=name, defaults={"source": name, "description": BUILTIN_MODELS[name]})
        return model
    model = BaseModel.objects.filter(name=name).first()
    if model is None:
        raise Invalid(f"Unknown base model {name!r}; register it first.", field="base_model")
    return model


@transaction.atomic
def base_model_register(*, name: str, source: str, description: str = "") -> BaseModel:
    """Register a Hugging Face id or a local model directory under ``name``."""
    source = (source or "").strip()
    if not source:
        raise Invalid("is required", field="source")
    if source.startswith(("/", ".", "~")) and not os.path.isdir(os.path.expanduser(source)):
        raise Invalid(f"no such directory: {source}", field="source")
    if source.startswith("~"):
        source = os.path.expanduser(source)
    if BaseModel.objects.filter(name=name).exists():
        raise Conflict(f"A base model named {name!r} already exists.", field="name")
    return BaseModel.objects.create(name=name, source=source, description=description)


# --- runs --------------------------------------------------------------------------------------


def _config_error(exc: Exception) -> Invalid:
    """The engine's validation errors read "field: message"; keep the field for the API."""
    message = str(exc)
    field, _, rest = message.partition(": ")
    if field == "config":
        return Invalid(rest, field="config")
    if rest and " " not in field:
        return Invalid(rest, field=f"config.{field}")
    return Invalid(message, field="config")


def run_config_validate(*, method: str, config: dict) -> dict:
    """Check a run's config with the engine's own rules; return it unchanged (defaults stay implicit)."""
    if not isinstance(config, dict):
        raise Invalid("must be a JSON object", field="config")
    owned = sorted(set(config) & set(SERVER_KEYS))
    if owned:
        raise Invalid(f"{', '.join(owned)} set by the server; give them as run fields instead", field="config")
    probe = {**config, "method": method, "output_dir": "-", "dataset": "-"}
    if method in ONLINE_METHODS:
        probe["reward_checkpoint"] = "-"
    try:
        RunConfig.from_dict(probe)
    except (ValueError, TypeError) as exc:
        raise _config_error(exc) from exc
    return config


def _check_reward_checkpoint(checkpoint: Checkpoint | None, method: str) -> None:
    if method in ONLINE_METHODS:
        if checkpoint is None:
            raise Invalid(f"is required for {method}", field="reward_checkpoint")
        if checkpoint.run.method != TrainingRun.Method.REWARD:
            raise Invalid(
                f"checkpoint {checkpoint.pk} is from a {checkpoint.run.method} run, not a reward run",
                field="reward_checkpoint",
            )
    elif checkpoint is not None:
        raise Invalid(f"only {', '.join(ONLINE_METHODS)} use a reward checkpoint, not {method}",
                      field="reward_checkpoint")


@transaction.atomic
def run_create(
    *,
    method: str,
    base_model: BaseModel,
    project: Project | None = None,
    snapshot: DatasetSnapshot | None = None,
    reward_checkpoint: Checkpoint | None = None,
    config: dict | None = None,
    gpus: int = 1,
    queue: str = "training",
    created_by=None,
    idempotency_key: str = "",
) -> tuple[TrainingRun, bool]:
    """Queue a training run: (run, created). With a project (and no snapshot) the task freezes a snapshot when it starts.

    ``queue`` picks the pool of GPU workers (e.g. "training-a100"); each pool runs
    ``celery -A config worker -Q <queue> -c 1``.

    ``idempotency_key`` (optional, at most 100 characters, unique per creator): a replay with a key already used
    returns that run, (run, False), and starts nothing, so a double-submitted create starts one run.
    """
    key = _check_run_idempotency_key(idempotency_key)
    if method not in SNAPSHOT_KINDS:
        raise Invalid(f"must be one of {', '.join(SNAPSHOT_KINDS)}; got {method!r}", field="method")
    if (project is None) == (snapshot is None):
        raise Invalid("give a project or a snapshot (exactly one)", field="project")
    if key:
        previous = _run_replay(key, created_by, method=method, base_model=base_model, project=project or snapshot.project)
        if previous is not None:
            return previous, False
    if snapshot is not None and snapshot.kind not in SNAPSHOT_KINDS[method]:
        raise Invalid(
            f"snapshot {snapshot.pk} is a {snapshot.kind!r} export; {method} trains on {' or '.join(SNAPSHOT_KINDS[method])}",
            field="snapshot",
        )
    if snapshot is not None and snapshot.format != "jsonl":
        raise Invalid(f"snapshot {snapshot.pk} is {snapshot.format}; runs read jsonl snapshots", field="snapshot")
    if not isinstance(gpus, int) or not 1 <= gpus <= MAX_GPUS:
        raise Invalid(f"must be an integer from 1 to {MAX_GPUS}", field="gpus")
    if not isinstance(queue, str) or not re.fullmatch(r"[A-Za-z0-9_.-]{1,50}", queue):
        raise Invalid("must be 1-50 letters, digits, '.', '_' or '-'", field="queue")
    _check_reward_checkpoint(reward_checkpoint, method)
    config = run_config_validate(method=method, config=config or {})
    try:
        with transaction.atomic():  # a savepoint: a concurrent replay that lost the race is rolled back alone
            run = TrainingRun.objects.create(
                method=method,
                base_model=base_model,
                project=project or snapshot.project,
                snapshot=snapshot,
                reward_checkpoint=reward_checkpoint,
                config=config,
                gpus=gpus,
                queue=queue,
                created_by=created_by,
                idempotency_key=key,
            )
    except IntegrityError:
        previous = _run_replay(key, created_by, method=method, base_model=base_model, project=project or snapshot.project)
        if not key or previous is None:
            raise
        return previous, False
    run_queue(run)
    return run, True


def _check_run_idempotency_key(key) -> str:
    key = key or ""
    if not isinstance(key, str) or len(key) > 100:
        raise Invalid("must be a string of at most 100 characters", field="idempotency_key")
    return key


def _run_replay(key: str, created_by, *, method: str, base_model: BaseModel, project) -> TrainingRun | None:
    """The run this creator already made with ``key``, if any; a key reused for a different run is a conflict."""
    previous = TrainingRun.objects.filter(created_by=created_by, idempotency_key=key).first()
    if previous is None:
        return None
    if (previous.method, previous.base_model_id, previous.project_id) != (method, base_model.pk, project.pk if project else None):
        raise Conflict(f"This idempotency key was used for run {previous.pk}, a different run.", field="idempotency_key")
    return previous


def run_queue(run: TrainingRun) -> None:
    """Send a new run to its queue's workers once the transaction that created it commits."""
    outbox.send(outbox.RUN_TRAIN, [run.pk], queue=run.queue)


@transaction.atomic
def run_cancel(*, run: TrainingRun) -> TrainingRun:
    """Cancel a queued run at once; ask a running one to stop (its task kills the engine's process group)."""
    run = TrainingRun.objects.select_for_update().get(pk=run.pk)
    if run.status == TrainingRun.Status.QUEUED:
        run.status = TrainingRun.Status.CANCELLED
        run.cancel_requested = True
        run.finished_at = timezone.now()
        run.save(update_fields=["status", "cancel_requested", "finished_at"])
    elif run.status == TrainingRun.Status.RUNNING and _is_stale(run):
        # Its worker is gone: nobody would act on the request, so settle it here.
        run.status = TrainingRun.Status.CANCELLED
        run.cancel_requested = True
        run.finished_at = timezone.now()
        run.error = "Cancelled after its worker stopped sending heartbeats."
        run.save(update_fields=["status", "cancel_requested", "finished_at", "error"])
    elif run.status == TrainingRun.Status.RUNNING:
        if not run.cancel_requested:
            run.cancel_requested = True
            run.save(update_fields=["cancel_requested"])
    elif run.status != TrainingRun.Status.CANCELLED:
        raise Conflict(f"Run {run.pk} has already {run.status}; there is nothing to cancel.")
    return run


def _is_stale(run: TrainingRun) -> bool:
    cutoff = timezone.now() - timedelta(seconds=settings.PS_RUN_STALE_SECONDS)
    return run.heartbeat_at is not None and run.heartbeat_at < cutoff


def resumable_checkpoint(run: TrainingRun) -> Checkpoint | None:
    """The run's latest training checkpoint that is still on disk."""
    for checkpoint in run.checkpoints.exclude(kind=Checkpoint.Kind.MERGED).order_by("-step"):
        if data_path(checkpoint.path).is_dir():
            return checkpoint
    return None


@transaction.atomic
def run_resume(*, run: TrainingRun, created_by=None) -> tuple[TrainingRun, bool]:
    """A new run of the same config that continues from ``run``'s last checkpoint: (run, created).

    Resuming twice returns the run already queued or running from that checkpoint, so a double submit
    starts one run.
    """
    run = TrainingRun.objects.select_for_update().get(pk=run.pk)
    if run.status not in (TrainingRun.Status.FAILED, TrainingRun.Status.CANCELLED):
        raise Conflict(f"Run {run.pk} is {run.status}; only a failed or cancelled run can be resumed.")
    checkpoint = resumable_checkpoint(run)
    if checkpoint is None:
        raise Conflict(f"Run {run.pk} saved no checkpoint to resume from; start a new run instead.")
    existing = TrainingRun.objects.filter(resumed_from=checkpoint, status__in=TRAINING_STATUSES_OPEN).first()
    if existing is not None:
        return existing, False
    new = TrainingRun.objects.create(
        method=run.method,
        base_model=run.base_model,
        project=run.project,
        snapshot=run.snapshot,
        reward_checkpoint=run.reward_checkpoint,
        resumed_from=checkpoint,
        config=run.config,
        gpus=run.gpus,
        queue=run.queue,
        step=checkpoint.step,
        total_steps=run.total_steps,
        metrics=[m for m in run.metrics if m.get("step", 0) <= checkpoint.step],
        created_by=created_by,
    )
    run_queue(new)
    return new, True


def runs_reap_stale(*, stale_after_s: int | None = None, now=None) -> int:
    """Mark ``running`` runs whose worker stopped sending heartbeats as failed; return how many.

    A worker that dies (OOM kill, lost node) leaves its row ``running``; this finds it. Called by a periodic
    task, at the start of every training task, and by hand (``manage.py train --reap``).
    """
    stale_after_s = stale_after_s if stale_after_s is not None else settings.PS_RUN_STALE_SECONDS
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=stale_after_s)
    count = 0
    stale = TrainingRun.objects.filter(status=TrainingRun.Status.RUNNING, heartbeat_at__lt=cutoff)
    for run_id in stale.values_list("pk", flat=True):
        with transaction.atomic():
            run = TrainingRun.objects.select_for_update().get(pk=run_id)
            if run.status != TrainingRun.Status.RUNNING or run.heartbeat_at is None or run.heartbeat_at >= cutoff:
                continue
            run.status = TrainingRun.Status.FAILED
            run.finished_at = now
            run.error = (
                f"The worker {run.worker or '(unknown)'} stopped sending heartbeats "
                f"(last at {run.heartbeat_at:%Y-%m-%d %H:%M:%S} UTC); it probably died. "
                "Resume the run to continue from its last checkpoint."
            )
            run.save(update_fields=["status", "finished_at", "error"])
            count += 1
    return count


# --- checkpoints -------------------------------------------------------------------------------


def _merge_source(checkpoint: Checkpoint) -> None:
    if checkpoint.kind not in (Checkpoint.Kind.LORA, Checkpoint.Kind.PROMPT_TUNING):
        raise Conflict(f"Checkpoint {checkpoint.pk} is a {checkpoint.kind} model, not an adapter; nothing to merge.")
    if not data_path(checkpoint.path).is_dir():
        raise Conflict(f"Checkpoint {checkpoint.pk}'s files are gone from {checkpoint.path}.")


@transaction.atomic
def checkpoint_merge(*, checkpoint: Checkpoint) -> Checkpoint:
    """Queue merge-and-export of an adapter into a full model directory (a new ``merged`` checkpoint)."""
    checkpoint = Checkpoint.objects.select_for_update().select_related("run").get(pk=checkpoint.pk)
    _merge_source(checkpoint)
    if checkpoint.export.get("status") in ("queued", "running", "succeeded"):
        return checkpoint  # a double submit, or already merged
    checkpoint.export = {"status": "queued", "requested_at": timezone.now().isoformat()}
    checkpoint.save(update_fields=["export"])
    outbox.send(outbox.CHECKPOINT_MERGE, [checkpoint.pk])
    return checkpoint


EVALUATION_KINDS = ("reward_accuracy", "win_rate")


@transaction.atomic
def checkpoint_evaluate(
    *,
    checkpoint: Checkpoint,
    kind: str,
    snapshot: DatasetSnapshot | None = None,
    reward_checkpoint: Checkpoint | None = None,
    baseline_checkpoint: Checkpoint | None = None,
    options: dict | None = None,
) -> Checkpoint:
    """Queue an evaluation: a reward checkpoint's accuracy on held-out pairs, or a policy checkpoint's win-rate
    over its base (or ``baseline_checkpoint``) judged by ``reward_checkpoint``. Results land in
    ``checkpoint.evaluation[kind]``."""
    checkpoint = Checkpoint.objects.select_for_update().select_related("run").get(pk=checkpoint.pk)
    if kind not in EVALUATION_KINDS:
        raise Invalid(f"must be one of {', '.join(EVALUATION_KINDS)}", field="kind")
    options = options or {}
    if not isinstance(options, dict):
        raise Invalid("must be a JSON object", field="options")
    bad = sorted(set(options) & {"kind", "policy_checkpoint", "baseline_checkpoint"})
    if bad:
        raise Invalid(f"{', '.join(bad)} set by the server", field="options")
    try:
        EvaluateSection(**{**options, "kind": kind})
    except (ValueError, TypeError) as exc:
        raise _config_error(exc) from exc
    snapshot = snapshot or checkpoint.run.snapshot
    if snapshot is None:
        raise Invalid("is required: the checkpoint's run has no snapshot", field="snapshot")
    if kind == "reward_accuracy":
        if checkpoint.run.method != TrainingRun.Method.REWARD:
            raise Invalid("reward_accuracy evaluates a reward checkpoint", field="kind")
        if snapshot.kind != "trl":
            raise Invalid("reward accuracy needs a preference (trl) snapshot", field="snapshot")
        reward_checkpoint = checkpoint
    else:
        if reward_checkpoint is None or reward_checkpoint.run.method != TrainingRun.Method.REWARD:
            raise Invalid("a reward checkpoint is required to judge the win-rate", field="reward_checkpoint")
        if checkpoint.run.method == TrainingRun.Method.REWARD:
            raise Invalid("win_rate evaluates a policy checkpoint, not a reward model", field="kind")
    current = checkpoint.evaluation.get(kind, {})
    if current.get("status") in ("queued", "running"):
        return checkpoint  # a double submit
    checkpoint.evaluation = {
        **checkpoint.evaluation,
        kind: {
            "status": "queued",
            "requested_at": timezone.now().isoformat(),
            "snapshot": snapshot.pk,
            "reward_checkpoint": reward_checkpoint.pk,
            "baseline_checkpoint": baseline_checkpoint.pk if baseline_checkpoint else None,
            "options": options,
        },
    }
    checkpoint.save(update_fields=["evaluation"])
    outbox.send(outbox.CHECKPOINT_EVALUATE, [checkpoint.pk, kind])
    return checkpoint
