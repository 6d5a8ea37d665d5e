"""What the training tasks do: claim a row, prepare the engine's config, run the engine, record what it reports.

Each job starts with a claim under ``select_for_update``: a task delivered twice (Redis redelivers unacked tasks
after the visibility timeout; a user may click twice) finds the row already taken and exits without starting
a second engine.
"""
from __future__ import annotations

import json
import logging
import shutil
import socket
import time
from collections import Counter
from pathlib import Path

from typing import Callable, TypeVar

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.db.models import Max
from django.utils import timezone

from annotation import boundary
from annotation.errors import DATABASE_AWAY, ServiceError
from annotation.exports import parse_options
from annotation.models import Annotation
from annotation.selectors import has_written_answers

from . import services
from .models import Checkpoint, DatasetSnapshot, TrainingRun
from .run_log import FULL_LOG_NAME, RunLog
from .runner import EngineProcess, Outcome, engine_command
from .snapshots import snapshot_create

logger = logging.getLogger(__name__)

Status = TrainingRun.Status
T = TypeVar("T")
METRICS_KEEP = 2_000  # points kept in a run's metric series; past that, older points are thinned out
METRICS_RECENT = 500  # the latest points, always kept at full resolution


# --- claiming ------------------------------------------------------------------------------------


def run_claim(*, run_id: int, worker: str) -> TrainingRun | None:
    """Take a queued run for this worker (queued -> running), or None when it is not ours to start."""
    with transaction.atomic():
        run = TrainingRun.objects.select_for_update().filter(pk=run_id).first()
        if run is None:
            logger.warning("run %s: no such run; task dropped", run_id)
            return None
        if run.status != Status.QUEUED:
            logger.info("run %s: duplicate delivery (status %s); not starting another engine", run_id, run.status)
            return None
        now = timezone.now()
        run.status = Status.RUNNING
        run.worker = worker
        run.started_at = now
        run.heartbeat_at = now
        run.error = ""
        run.save(update_fields=["status", "worker", "started_at", "heartbeat_at", "error"])
        return run


def run_fail(run: TrainingRun, message: str) -> None:
    TrainingRun.objects.filter(pk=run.pk).update(
        status=Status.FAILED, error=message, finished_at=timezone.now(), pid=None
    )


# --- snapshots -----------------------------------------------------------------------------------


def snapshot_kind(method: str, project=None) -> str:
    """What a run freezes from its project: kto rows for KTO; for SFT the project's written answers when it has
    any (demonstrations, improved responses, revisions: ``annotation.selectors.has_written_answers``), else the
    chosen side of its pairs; preference pairs for the rest."""
    if method == TrainingRun.Method.KTO:
        return "kto"
    if method == TrainingRun.Method.SFT and project is not None and has_written_answers(project):
        return "sft"
    return "trl"


def snapshot_for_run(run: TrainingRun) -> DatasetSnapshot:
    """The run's snapshot: the one it names, else a frozen export of its project.

    An earlier snapshot of the project is reused when it was made with the same options and no annotation was
    added or edited since; otherwise a new one is frozen (``training.snapshots.snapshot_create``).
    """
    if run.snapshot_id is not None:
        return run.snapshot
    project = run.project
    kind, style, fmt = snapshot_kind(run.method, project), "conversational", "jsonl"
    options = parse_options({"kind": kind, "style": style}, project=project).as_dict()
    annotations = Annotation.objects.filter(item__project=project)
    high_water = annotations.aggregate(m=Max("id"))["m"] or 0
    for candidate in DatasetSnapshot.objects.filter(
        project=project, kind=kind, style=style, format=fmt, annotation_high_water=high_water
    ).order_by("-created_at")[:5]:
        unchanged = not annotations.filter(updated_at__gt=candidate.created_at).exists()
        if unchanged and candidate.options == options and services.data_path(candidate.path).is_file():
            return _set_snapshot(run, candidate)
    snapshot = snapshot_create(
        project=project, kind=kind, style=style, format=fmt, options={}, created_by=run.created_by,
        name=f"{project.slug} {kind} for run {run.pk}",
    )
    return _set_snapshot(run, snapshot)


def _set_snapshot(run: TrainingRun, snapshot: DatasetSnapshot) -> DatasetSnapshot:
    run.snapshot = snapshot
    TrainingRun.objects.filter(pk=run.pk).update(snapshot=snapshot)
    return snapshot


# --- the engine config ---------------------------------------------------------------------------


def stored_config(run: TrainingRun) -> dict:
    """The run's config as the database holds it, through the text boundary and the engine's rules again: one
    written before these checks (or by hand) fails the run naming its field, before any engine starts."""
    boundary.check(run.config, "config")
    return services.run_config_validate(method=run.method, config=run.config)


def engine_config(run: TrainingRun, snapshot: DatasetSnapshot, output_dir: Path) -> dict:
    """The JSON the engine reads: the run's own settings (``stored_config``) plus the paths only the server
    knows."""
    source = run.base_model.source
    config = {
        **stored_config(run),
        "method": run.method,
        "output_dir": str(output_dir),
        "base_model": source,  # "tiny", a Hugging Face id, or an absolute directory
        "data_dir": str(services.data_dir()),
        "dataset": str(services.data_path(snapshot.path)),
    }
    if run.reward_checkpoint_id:
        config["reward_checkpoint"] = str(services.data_path(run.reward_checkpoint.path))
        config["reward_base_model"] = run.reward_checkpoint.run.base_model.source  # checkpoints name no server path
    if run.resumed_from_id:
        config["resume_from_checkpoint"] = str(services.data_path(run.resumed_from.path))
    return config


def write_config(config: dict, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(config, indent=2))
    tmp.replace(path)
    return path


# --- recording a run's events --------------------------------------------------------------------

class DatabaseAway(Exception):
    """The database did not answer for longer than ``PS_RUN_DB_OUTAGE_SECONDS``."""


def _reconnect_later() -> None:
    """Drop the broken connection; the next query opens a new one."""
    try:
        connection.close()
    except DatabaseError:
        pass


def with_database(write: Callable[[], T], *, what: str, patience_s: float | None = None) -> T:
    """``write()``, tried again every second while the database is away, for at most ``patience_s`` (default
    ``PS_RUN_DB_OUTAGE_SECONDS``); then DatabaseAway."""
    patience_s = settings.PS_RUN_DB_OUTAGE_SECONDS if patience_s is None else patience_s
    started = time.monotonic()
    while True:
        try:
            return write()
        except DATABASE_AWAY as exc:
            _reconnect_later()
            away = time.monotonic() - started
            if away > patience_s:
                raise DatabaseAway(f"The database did not answer for {away:.0f} s while {what}: {exc}") from exc
            time.sleep(1.0)


class RunRecorder:
    """Keeps the latest progress, new metrics and checkpoints in memory and writes them to the database on each tick.

    Writes are ``UPDATE``s of the recorded columns only, so a concurrent cancel request is never overwritten. While
    the database is away (a restart, a failover) the engine keeps training and its events wait here; they are
    written on the first tick the database answers again. An outage longer than ``PS_RUN_DB_OUTAGE_SECONDS``
    stops the engine (``DatabaseAway``).
    """

    def __init__(self, run: TrainingRun, engine: EngineProcess):
        self.run = run
        self.engine = engine
        self.step = run.step
        self.total = run.total_steps
        self.eta = None
        self.metrics = list(run.metrics)
        self.metrics_changed = False
        self.checkpoints: list[dict] = []  # checkpoint events not written yet
        self.result: dict = {}
        self.result_changed = False
        self.log = RunLog()  # the events in words: the run page's log
        self.log_ended = False
        self.away_since: float | None = None
        self.received: Counter = Counter()  # events by kind, as the engine sent them (recorded in the result)

    def on_event(self, event: dict) -> None:
        self.log.add(event)
        kind = event["event"]
        self.received[kind] += 1
        if kind == "started":
            self.total = int(event.get("total_steps") or self.total or 0)
        elif kind == "progress":
            self.step = int(event.get("step") or 0)
            self.total = int(event.get("total") or self.total or 0)
            self.eta = event.get("eta_s")
        elif kind == "metrics":
            self.metrics.append({"step": int(event.get("step") or 0), **(event.get("metrics") or {})})
            if len(self.metrics) > METRICS_KEEP:  # every other older point goes: the curve keeps its shape
                self.metrics = self.metrics[:-METRICS_RECENT][::2] + self.metrics[-METRICS_RECENT:]
            self.metrics_changed = True
        elif kind == "checkpoint":
            self.checkpoints.append(event)  # written on the next tick, with the progress
        elif kind in ("setup", "data_stats"):  # shown on the run while it trains; the final result keeps them
            self.result.update({k: v for k, v in event.items() if k not in ("event", "time")})
            self.result_changed = True
        elif kind == "done":
            self.result = {**self.result, **(event.get("result") or {})}

    def write_checkpoints(self) -> None:
        while self.checkpoints:
            event = self.checkpoints[0]
            Checkpoint.objects.update_or_create(
                run_id=self.run.pk,
                step=int(event.get("step") or 0),
                kind=event.get("kind") or Checkpoint.Kind.LORA,
                defaults={
                    "path": services.stored_path(event["path"]),
                    "size_bytes": int(event.get("size_bytes") or 0),
                    "metrics": event.get("metrics") or {},
                },
            )
            self.checkpoints.pop(0)

    def flush(self) -> bool:
        """Write checkpoints, progress, metrics, log tail and heartbeat; return True when the engine should stop.

        While the database is away this returns False and keeps everything for the next tick."""
        try:
            stop = self._write()
        except DATABASE_AWAY as exc:
            _reconnect_later()
            now = time.monotonic()
            if self.away_since is None:
                self.away_since = now
                logger.warning("run %s: the database is away (%s); the engine keeps training", self.run.pk, exc)
            elif now - self.away_since > settings.PS_RUN_DB_OUTAGE_SECONDS:
                raise DatabaseAway(
                    f"The database did not answer for {now - self.away_since:.0f} s (PS_RUN_DB_OUTAGE_SECONDS is "
                    f"{settings.PS_RUN_DB_OUTAGE_SECONDS:g}); the engine was stopped at step {self.step}. "
                    f"Last error: {exc}"
                ) from exc
            return False
        if self.away_since is not None:
            logger.info("run %s: the database answers again after %.1f s; the events kept meanwhile are written",
                        self.run.pk, time.monotonic() - self.away_since)
            self.away_since = None
        return stop

    def _write(self) -> bool:
        self.write_checkpoints()
        fields = dict(step=self.step, total_steps=self.total, eta_seconds=self.eta,
                      log_tail=self.log.text(), heartbeat_at=timezone.now())
        if self.metrics_changed:  # the series is the one large column: written only when it grew
            fields["metrics"] = self.metrics
        if self.result_changed:
            fields["result"] = self.result
        TrainingRun.objects.filter(pk=self.run.pk).update(**fields)
        self.metrics_changed = self.result_changed = False  # only once written: an outage keeps them to write
        row = TrainingRun.objects.filter(pk=self.run.pk).values("status", "cancel_requested").first()
        # Stop on a cancel, and also when the row was taken from us (deleted, or reaped as stale).
        return row is None or row["cancel_requested"] or row["status"] != Status.RUNNING

    def finish(self, outcome: Outcome) -> None:
        """The run's final state, written once the database answers (waiting for it as long as a tick would)."""
        with_database(lambda: self._finish(outcome), what="recording the end of the run")

    def _finish(self, outcome: Outcome) -> None:
        self.write_checkpoints()
        row = TrainingRun.objects.filter(pk=self.run.pk).values("status", "cancel_requested").first()
        if row is None:
            return
        fields = dict(
            step=self.step,
            total_steps=self.total,
            eta_seconds=None,
            metrics=self.metrics,
            heartbeat_at=timezone.now(),
            finished_at=timezone.now(),
            pid=None,
            result={**self.result, "peak_rss_mb": outcome.peak_rss_mb, "cpu_s": outcome.cpu_s,
                    "events": dict(self.received)},
        )
        if outcome.stopped and row["status"] != Status.RUNNING:
            fields.pop("finished_at")  # reaped while running: keep that verdict
        elif outcome.stopped:
            fields.update(status=Status.CANCELLED, error="")
        elif outcome.succeeded:
            fields.update(status=Status.SUCCEEDED, error="", eta_seconds=0.0)
        else:
            fields.update(status=Status.FAILED, error=outcome.failure_message())
        if not self.log_ended:  # once, though the write may be tried again while the database is away
            self.log.ended(status=fields.get("status", ""), reported_error=outcome.error is not None,
                           failure=fields.get("error", ""))
            self.log_ended = True
        fields["log_tail"] = self.log.text()
        TrainingRun.objects.filter(pk=self.run.pk).update(**fields)


# --- the jobs ------------------------------------------------------------------------------------


def _describe(exc: Exception) -> str:
    if isinstance(exc, ServiceError) and exc.field:
        return f"{exc.field}: {exc.message}"
    return str(exc)


def worker_name(hostname: str | None = None) -> str:
    return hostname or socket.gethostname()


def run_execute(*, run_id: int, worker: str | None = None) -> str | None:
    """Claim, prepare and run one training run to its end; return its final status (None if not claimed)."""
    services.runs_reap_stale()
    run = run_claim(run_id=run_id, worker=worker_name(worker))
    if run is None:
        return None
    run = TrainingRun.objects.select_related("base_model", "snapshot", "project", "reward_checkpoint", "resumed_from").get(
        pk=run.pk
    )
    output_dir = services.run_output_dir(run)
    try:
        if output_dir.exists() and any(output_dir.iterdir()):
            raise RuntimeError(f"The output directory {output_dir} already exists; it would be overwritten.")
        stored_config(run)
        snapshot = snapshot_for_run(run)
        config_path = write_config(engine_config(run, snapshot, output_dir), output_dir / "engine-config.json")
    except ServiceError as exc:  # bad input (its config, its data): said by name, no traceback in the log
        logger.warning("run %s: could not start: %s", run.pk, _describe(exc))
        run_fail(run, f"Could not start the run: {_describe(exc)}")
        return Status.FAILED
    except Exception as exc:  # any preparation error ends the run with a message, never a stuck row
        logger.exception("run %s: could not start", run.pk)
        run_fail(run, f"Could not start the run: {_describe(exc)}")
        return Status.FAILED

    command = engine_command(config_path, gpus=run.gpus, distributed=stored_config(run).get("distributed", "ddp"))
    engine = EngineProcess(command, log_path=output_dir / FULL_LOG_NAME)
    pid = engine.start()
    TrainingRun.objects.filter(pk=run.pk).update(pid=pid)
    logger.info("run %s: engine started, pid %s", run.pk, pid)
    recorder = RunRecorder(run, engine)
    try:
        outcome = engine.follow(recorder.on_event, recorder.flush, tick_s=settings.PS_RUN_HEARTBEAT_SECONDS)
    except DatabaseAway as exc:  # too long an outage: the run fails with that reason, once the database is back
        engine.stop(grace_s=2.0)
        reason = str(exc)
        logger.error("run %s: %s", run.pk, reason)
        # until the reaper would fail it for its missing heartbeats, with a less useful reason
        with_database(lambda: run_fail(run, reason), what="recording the failure",
                      patience_s=settings.PS_RUN_STALE_SECONDS)
        return Status.FAILED
    except BaseException as exc:  # the worker is shutting down, a bug, ...: no engine unwatched
        engine.stop(grace_s=2.0)
        logger.exception("run %s: lost track of the engine; stopped it", run.pk)
        run_fail(run, f"The worker lost track of the engine and stopped it: {exc!r}")
        raise
    recorder.finish(outcome)
    status = TrainingRun.objects.values_list("status", flat=True).get(pk=run.pk)
    logger.info("run %s: engine exited with %s; run %s", run.pk, outcome.returncode, status)
    return status


def _engine_job(config: dict, config_path: Path) -> Outcome:
    """Run a short engine job (evaluate, merge) to its end; it has no cancel."""
    write_config(config, config_path)
    engine = EngineProcess(engine_command(config_path))
    engine.start()
    return engine.follow(lambda event: None, lambda: False)


def checkpoint_merge_execute(*, checkpoint_id: int) -> str | None:
    with transaction.atomic():
        checkpoint = Checkpoint.objects.select_for_update().select_related("run", "run__base_model").get(pk=checkpoint_id)
        if checkpoint.export.get("status") != "queued":
            logger.info("checkpoint %s: merge already %s", checkpoint_id, checkpoint.export.get("status"))
            return None
        checkpoint.export = {**checkpoint.export, "status": "running", "started_at": timezone.now().isoformat()}
        checkpoint.save(update_fields=["export"])
    run = checkpoint.run
    source = services.data_path(checkpoint.path)
    target = source.parent / f"{source.name}-merged"
    if target.exists():
        shutil.rmtree(target)  # a half-written export of an earlier, interrupted attempt
    config = {
        "method": "merge",
        "output_dir": str(target),
        "base_model": run.base_model.source,
        "data_dir": str(services.data_dir()),
        "merge": {"adapter": str(source), "task": "seq_cls" if run.method == TrainingRun.Method.REWARD else "causal"},
    }
    outcome = _engine_job(config, source.parent / f"merge-{checkpoint.pk}.json")
    with transaction.atomic():
        checkpoint = Checkpoint.objects.select_for_update().get(pk=checkpoint_id)
        if outcome.succeeded:
            merged, _ = Checkpoint.objects.update_or_create(
                run=run,
                step=checkpoint.step,
                kind=Checkpoint.Kind.MERGED,
                defaults={
                    "path": services.stored_path(target),
                    "size_bytes": int(outcome.done.get("size_bytes") or 0),
                    "metrics": checkpoint.metrics,
                },
            )
            checkpoint.export = {**checkpoint.export, "status": "succeeded", "checkpoint": merged.pk, "error": ""}
        else:
            checkpoint.export = {**checkpoint.export, "status": "failed", "error": outcome.failure_message()}
        checkpoint.export["finished_at"] = timezone.now().isoformat()
        checkpoint.save(update_fields=["export"])
    return checkpoint.export["status"]


def checkpoint_evaluate_execute(*, checkpoint_id: int, kind: str) -> str | None:
    with transaction.atomic():
        checkpoint = Checkpoint.objects.select_for_update().select_related("run", "run__base_model").get(pk=checkpoint_id)
        request = dict(checkpoint.evaluation.get(kind) or {})
        if request.get("status") != "queued":
            logger.info("checkpoint %s: %s evaluation already %s", checkpoint_id, kind, request.get("status"))
            return None
        request.update(status="running", started_at=timezone.now().isoformat())
        checkpoint.evaluation = {**checkpoint.evaluation, kind: request}
        checkpoint.save(update_fields=["evaluation"])
    run = checkpoint.run
    snapshot = DatasetSnapshot.objects.get(pk=request["snapshot"])
    reward = Checkpoint.objects.get(pk=request["reward_checkpoint"])
    output_dir = services.data_dir() / "evaluations" / f"checkpoint-{checkpoint.pk}-{kind}-{int(time.time())}"
    section = {**request.get("options", {}), "kind": kind}
    if kind == "win_rate":
        section["policy_checkpoint"] = str(services.data_path(checkpoint.path))
        if request.get("baseline_checkpoint"):
            baseline = Checkpoint.objects.get(pk=request["baseline_checkpoint"])
            section["baseline_checkpoint"] = str(services.data_path(baseline.path))
    config = {
        "method": "evaluate",
        "output_dir": str(output_dir),
        "base_model": run.base_model.source,
        "data_dir": str(services.data_dir()),
        "dataset": str(services.data_path(snapshot.path)),
        "reward_checkpoint": str(services.data_path(reward.path)),
        "reward_base_model": reward.run.base_model.source,
        "evaluate": section,
    }
    outcome = _engine_job(config, output_dir / "engine-config.json")
    with transaction.atomic():
        checkpoint = Checkpoint.objects.select_for_update().get(pk=checkpoint_id)
        request = dict(checkpoint.evaluation.get(kind) or {})
        if outcome.succeeded:
            request.update(status="succeeded", result=outcome.done, error="")
        else:
            request.update(status="failed", error=outcome.failure_message())
        request["finished_at"] = timezone.now().isoformat()
        checkpoint.evaluation = {**checkpoint.evaluation, kind: request}
        checkpoint.save(update_fields=["evaluation"])
    return request["status"]
