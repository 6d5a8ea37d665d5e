"""Training tests. The `worker` fixture starts a real Celery worker over Redis and the test PostgreSQL database.

Tests that use it need `transactional_db`: the worker is another process and sees only committed rows.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings

from tests.factories import UserFactory, make_project
from training.models import DatasetSnapshot, TrainingRun

ROOT = Path(__file__).resolve().parents[2]
FINISHED = ("succeeded", "failed", "cancelled")

# Prompts with a clear preference the tiny model can pick up within a few steps.
TOPICS = ["rain", "cats", "tea", "maps", "bread", "stars", "rivers", "clocks", "paper", "glass", "music", "snow",
          "boats", "trees", "salt", "wind"]


def preference_rows(n: int = 32) -> list[dict]:
    rows = []
    for i in range(n):
        topic = TOPICS[i % len(TOPICS)]
        rows.append({
            "prompt": [{"role": "user", "content": f"Tell me about {topic}."}],
            "chosen": [{"role": "assistant", "content": f"Thank you for asking. Here is a kind note about {topic}."}],
            "rejected": [{"role": "assistant", "content": f"No. {topic} {topic} {topic}."}],
            "margin": 1.0 if i % 2 else 2.0,
        })
    return rows


def make_snapshot(project=None, rows=None, kind="trl", name="pairs") -> DatasetSnapshot:
    """A snapshot row and its JSONL file under PS_DATA_DIR, as the exporter writes them."""
    import hashlib

    project = project or make_project("pairwise")
    rows = rows if rows is not None else preference_rows()
    rel = Path("snapshots") / f"test-{project.pk}-{name}-{time.time_ns()}.jsonl"
    path = Path(settings.PS_DATA_DIR) / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    data = "".join(json.dumps(r) + "\n" for r in rows).encode()
    path.write_bytes(data)
    return DatasetSnapshot.objects.create(
        project=project, name=name, path=str(rel), sha256=hashlib.sha256(data).hexdigest(), size_bytes=len(data),
        kind=kind, style="conversational", format="jsonl", row_count=len(rows),
    )


def wait_for(run: TrainingRun, until, timeout: float = 180.0, worker=None) -> TrainingRun:
    """Poll the run row until ``until(run)`` holds; fail with the run's log and the worker's on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run.refresh_from_db()
        if until(run):
            return run
        time.sleep(0.2)
    worker_log = worker.log_tail() if worker else ""
    pytest.fail(
        f"run {run.pk} still {run.status} at step {run.step} after {timeout}s\n"
        f"error: {run.error}\nlog tail:\n{run.log_tail[-3000:]}\nworker log:\n{worker_log}"
    )


def wait_finished(run, timeout=180.0, worker=None) -> TrainingRun:
    return wait_for(run, lambda r: r.status in FINISHED, timeout, worker)


class Worker:
    def __init__(self, proc: subprocess.Popen, log_path: Path):
        self.proc, self.log_path = proc, log_path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def log_tail(self, n: int = 60) -> str:
        return "\n".join(self.log().splitlines()[-n:])


def _celery(*args):
    return [sys.executable, "-m", "celery", "-A", "config", *args]


def worker_env() -> dict:
    """The worker's environment: the test database (pytest-django's test_<name>) and this session's Redis db."""
    db = settings.DATABASES["default"]
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings_test",
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "PS_VAR_DIR": str(settings.VAR_DIR),
        "PS_DATA_DIR": str(settings.PS_DATA_DIR),
        "PS_RUN_HEARTBEAT_SECONDS": "0.5",
        "OMP_NUM_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
    }


def start_worker(log_path: Path, queues: str = "training,default", concurrency: int = 2, pool: str = "prefork",
                 name: str = "test") -> Worker:
    env = worker_env()
    log = open(log_path, "w")
    proc = subprocess.Popen(
        _celery("worker", "-Q", queues, "-c", str(concurrency), "-P", pool, "-l", "INFO",
                "--without-gossip", "--without-mingle", "--without-heartbeat", "-n", f"{name}-{os.getpid()}@%h"),
        env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    log.close()
    handle = Worker(proc, log_path)
    deadline = time.monotonic() + 90
    while "ready." not in handle.log():
        if proc.poll() is not None or time.monotonic() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail(f"the Celery worker did not start:\n{handle.log_tail()}")
        time.sleep(0.2)
    return handle


def stop_worker(handle: Worker) -> None:
    try:
        os.killpg(handle.proc.pid, signal.SIGTERM)
        handle.proc.wait(timeout=30)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        os.killpg(handle.proc.pid, signal.SIGKILL)
        handle.proc.wait()


def session_worker(tmp_path_factory):
    """`celery -A config worker -Q training,default -c 2` on the test database and this session's Redis db.

    Used by the one session-wide ``worker`` fixture in tests/conftest.py, so every package shares a
    single worker (two workers on one queue would split a test's deliveries between them)."""
    # Run ids restart with a fresh test database: old run directories and queued messages are not ours.
    for sub in ("runs", "evaluations"):
        shutil.rmtree(Path(settings.PS_DATA_DIR) / sub, ignore_errors=True)
    env = worker_env()
    subprocess.run(_celery("purge", "-f", "-Q", "training,default,doomed"), env=env, cwd=ROOT,
                   check=True, capture_output=True, timeout=60)
    handle = start_worker(tmp_path_factory.mktemp("worker") / "worker.log")
    yield handle
    stop_worker(handle)


@pytest.fixture
def rater(db):
    return UserFactory()


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie leader still counts for killpg; look for a live member.
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def annotated_project(n_items: int = 16):
    """A pairwise project whose rater always prefers the polite response, annotated through the real services."""
    from annotation.models import Response
    from annotation.services import annotation_submit, queue_next
    from tests.factories import add_member, make_item

    project = make_project("pairwise", overlap=1)
    rater = add_member(project, UserFactory())
    for i in range(n_items):
        topic = TOPICS[i % len(TOPICS)]
        make_item(project, [f"Thank you for asking. A kind note about {topic}.", f"No. {topic} {topic}."])
    while (assignment := queue_next(rater=rater, project=project)) is not None:
        polite = Response.objects.filter(pk__in=assignment.display_order, text__startswith="Thank").get().pk
        choice = "AB"[assignment.display_order.index(polite)]
        annotation_submit(rater=rater, item_id=assignment.item_id,
                          payload={"choice": choice, "strength": "better", "criteria": {}})
    return project, rater
