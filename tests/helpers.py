"""Helpers shared by the tests: annotating through the real services, snapshots, a real Celery worker,
waiting for runs, rounds and jobs, and the engine's synthetic data. Fixtures live in tests/conftest.py."""
from __future__ import annotations

import hashlib
import io
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from annotation import services
from annotation.importer import import_items
from annotation.models import Item, Response
from tests.factories import UserFactory, add_member, make_item, make_project
from training.models import DatasetSnapshot, TrainingRun


# --- annotating as a rater would ----------------------------------------------------------------------

POSITIONS = "ABCDEFGHIJ"


def next_assignment(rater, project):
    assignment = services.queue_next(rater=rater, project=project)
    assert assignment is not None, "the queue had nothing for this rater"
    return assignment


def pick(rater, project, winner_text=None, *, choice=None, strength="better", criteria=None, time_spent_ms=1000):
    """Take the next item and prefer the response whose text is ``winner_text`` (or send ``choice``).

    The rater sees the responses in a random order; the letter sent is wherever the winner was shown.
    Returns (assignment, letter sent).
    """
    assignment = next_assignment(rater, project)
    texts = dict(Item.objects.get(pk=assignment.item_id).responses.values_list("id", "text"))
    shown = [texts[rid] for rid in assignment.display_order]
    if choice is None:
        choice = POSITIONS[shown.index(winner_text)]
    payload = {"choice": choice}
    if choice in ("A", "B") and project.config["strength"]:
        payload["strength"] = strength
    if criteria:
        payload["criteria"] = {name: POSITIONS[shown.index(t)] if t in shown else t for name, t in criteria.items()}
    services.annotation_submit(rater=rater, item_id=assignment.item_id, payload=payload, time_spent_ms=time_spent_ms)
    return assignment, choice


def rank(rater, project, groups_of_texts, *, time_spent_ms=1000):
    """Take the next item and rank it: ``groups_of_texts`` best first, an inner list is a tie."""
    assignment = next_assignment(rater, project)
    ids = {t: rid for rid, t in Item.objects.get(pk=assignment.item_id).responses.values_list("id", "text")}
    order = [[ids[t] for t in group] for group in groups_of_texts]
    services.annotation_submit(rater=rater, item_id=assignment.item_id, payload={"order": order},
                               time_spent_ms=time_spent_ms)
    return assignment


def rate(rater, project, overall, *, criteria=None, time_spent_ms=1000):
    assignment = next_assignment(rater, project)
    payload = {"overall": overall}
    if criteria:
        payload["criteria"] = criteria
    services.annotation_submit(rater=rater, item_id=assignment.item_id, payload=payload, time_spent_ms=time_spent_ms)
    return assignment


class TokenClient(APIClient):
    """An APIClient whose ``force_authenticate(user)`` signs in with the user's API token instead, as
    scripts and real raters' tools do: next item and submit are then answered by ``annotation.api.hotpath``
    rather than by the DRF views."""

    def force_authenticate(self, user=None, token=None):
        if user is None:
            self.credentials()
        else:
            self.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.get_or_create(user=user)[0].key}")


# --- training: snapshots, runs and a real worker -----------------------------------------------------

ROOT = Path(__file__).resolve().parents[1]
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


def database_url() -> str:
    """The URL of the test database (pytest-django's test_<name>, or SQLite's test file) for other processes."""
    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    return f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


def worker_env() -> dict:
    """The worker's environment: the test database and this session's broker (a Redis db, or the filesystem
    broker's folders under PS_VAR_DIR)."""
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings_test",
        "DATABASE_URL": database_url(),
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "PS_VAR_DIR": str(settings.VAR_DIR),
        "PS_DATA_DIR": str(settings.PS_DATA_DIR),
        "PS_RUN_HEARTBEAT_SECONDS": "0.5",
        "OMP_NUM_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
    }


def start_worker(log_path: Path, queues: str = "training,default", concurrency: int = 2, pool: str = "prefork",
                 name: str = "test", env: dict | None = None, beat: bool = False) -> Worker:
    """A Celery worker on the test database and this session's Redis db (``env`` overrides either); ``beat``
    embeds Celery beat, which sends the periodic tasks (reaper, outbox re-sender)."""
    env = {**worker_env(), **(env or {})}
    extra = ["-B", "-s", str(log_path.with_suffix(".beat-schedule"))] if beat else []
    log = open(log_path, "w")
    proc = subprocess.Popen(
        _celery("worker", "-Q", queues, "-c", str(concurrency), "-P", pool, "-l", "INFO",
                "--without-gossip", "--without-mingle", "--without-heartbeat", "-n", f"{name}-{os.getpid()}@%h",
                *extra),
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
    # Queued messages of an earlier session are not ours (nor are its run directories: see tests/conftest.py).
    env = worker_env()
    subprocess.run(_celery("purge", "-f", "-Q", "training,default,doomed"), env=env, cwd=ROOT,
                   check=True, capture_output=True, timeout=60)
    handle = start_worker(tmp_path_factory.mktemp("worker") / "worker.log")
    yield handle
    stop_worker(handle)


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
    project = make_project("pairwise", overlap=1)
    rater = add_member(project, UserFactory())
    for i in range(n_items):
        topic = TOPICS[i % len(TOPICS)]
        make_item(project, [f"Thank you for asking. A kind note about {topic}.", f"No. {topic} {topic}."])
    while (assignment := services.queue_next(rater=rater, project=project)) is not None:
        polite = Response.objects.filter(pk__in=assignment.display_order, text__startswith="Thank").get().pk
        choice = "AB"[assignment.display_order.index(polite)]
        services.annotation_submit(rater=rater, item_id=assignment.item_id,
                                   payload={"choice": choice, "strength": "better", "criteria": {}})
    return project, rater


# --- the loop: rounds and jobs -----------------------------------------------------------------------


def prompts_project(n: int = 4, mode: str = "pairwise", **config):
    """A project with ``n`` distinct prompts (two imported responses each)."""
    project = make_project(mode, **config)
    rows = [{"id": f"q{i}", "prompt": f"Tell me about {TOPICS[i % len(TOPICS)]}.",
             "responses": [f"Thank you for asking. A kind note about {TOPICS[i % len(TOPICS)]}.",
                           f"No. {TOPICS[i % len(TOPICS)]}."]}
            for i in range(n)]
    data = "".join(json.dumps(r) + "\n" for r in rows).encode()
    import_items(project=project, stream=io.BytesIO(data), filename="prompts.jsonl", round_name="seed")
    return project


def wait_round(rnd, timeout: float = 180.0, worker=None):
    """Poll a Round until it is no longer generating."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rnd.refresh_from_db()
        if rnd.status != "generating":
            return rnd
        time.sleep(0.3)
    runs = "\n".join(f"run {r.pk}: {r.status} {r.error[-2000:]}" for r in rnd.runs.all())
    pytest.fail(f"round {rnd.pk} still generating after {timeout}s\n{runs}\n{worker.log_tail() if worker else ''}")


def wait_job(job, timeout: float = 180.0, worker=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job.refresh_from_db()
        if job.status in ("succeeded", "failed"):
            return job
        time.sleep(0.3)
    pytest.fail(f"job {job.pk} still {job.status} after {timeout}s\n{worker.log_tail() if worker else ''}")


# --- the engine: synthetic data and in-process runs (no database) ------------------------------------

WORDS = "people time year day way thing man woman child world life hand part place case week work number".split()


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def synthetic_pairs(n=48, seed=0, conversational=True):
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        question = " ".join(rng.choice(WORDS) for _ in range(5))
        good = "good " + " ".join(rng.choice(WORDS) for _ in range(3)) + " thanks"
        bad = "bad " + " ".join(rng.choice(WORDS) for _ in range(3)) + " sorry"
        if conversational:
            rows.append({
                "prompt": [{"role": "user", "content": question}],
                "chosen": [{"role": "assistant", "content": good}],
                "rejected": [{"role": "assistant", "content": bad}],
                "margin": rng.choice([0.0, 0.5, 1.0]),
                "prompt_id": f"p{i}",
                "source": "synthetic",  # provenance columns are carried in files and ignored by the engine
            })
        else:
            rows.append({"prompt": question, "chosen": " " + good, "rejected": " " + bad})
    return rows


def make_config(tmp_path, data_dir, **fields):
    from training.engine.config import RunConfig

    base = {"output_dir": str(tmp_path / "out"), "data_dir": data_dir, "lora_r": 8, "lora_alpha": 16,
            "batch_size": 8, "max_length": 128, "eval_fraction": 0.25}
    return RunConfig.from_dict({**base, **fields})


def run_method(cfg, **kwargs):
    """Run one method in-process; return (result, events)."""
    import importlib

    from training.engine.cli import METHOD_FUNCTIONS
    from training.engine.common import setup_runtime
    from training.engine.events import Reporter

    reporter = Reporter(echo=False)
    setup_runtime(cfg)
    module_name, function_name = METHOD_FUNCTIONS[cfg.method]
    result = getattr(importlib.import_module(module_name), function_name)(cfg, reporter, **kwargs)
    return result, reporter


def first_token_targets(tiny_path, prompts, mass=0.3):
    """Tokens the base model most expects to start a response with, covering about `mass` of the probability.

    A reward for starting with one of them is reachable for a small adapter and starts around `mass`.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_path)
    model = AutoModelForCausalLM.from_pretrained(tiny_path).eval()
    probs = 0
    with torch.no_grad():
        for prompt in prompts:
            ids = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, return_tensors="pt",
                                                return_dict=True)["input_ids"]
            probs = probs + model(ids).logits[0, -1].softmax(-1)
    probs = probs / len(prompts)
    order = probs.argsort(descending=True)
    k = int((probs[order].cumsum(0) < mass).sum()) + 1
    return set(order[:k].tolist())


# --- a loopback OpenAI-compatible chat endpoint ------------------------------------------------------


class LoopbackChat:
    """An OpenAI-compatible chat server on 127.0.0.1, started by the test: ``POST /v1/chat/completions`` answers
    ``reply(body)`` (default: "Answer from <model>: ..."). With ``"stream": true`` the answer goes out word by word as
    server-sent events, ``delay_s`` apart, as OpenAI's API sends them; ``status`` other than 200 fails every request.
    ``requests`` keeps each request's path, Authorization header and body. Use it in a ``with``."""

    def __init__(self, reply=None, *, delay_s: float = 0.0, status: int = 200):
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.requests: list[dict] = []
        outer = self
        reply = reply or (lambda body: f"Answer from {body['model']}: a short and friendly reply to you.")

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
                if status != 200:
                    self._send(status, "application/json", b'{"error": {"message": "failing on purpose"}}')
                    return
                text = reply(body)
                if not body.get("stream"):
                    data = {"choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                         "finish_reason": "stop"}]}
                    self._send(200, "application/json", json.dumps(data).encode())
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Cache-Control", "no-cache")
                self.send_header("Connection", "close")
                self.end_headers()
                words = text.split(" ")
                for i, word in enumerate(words):
                    piece = word if i == 0 else " " + word
                    chunk = {"choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
                    self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                    self.wfile.flush()
                    time.sleep(delay_s)
                self.wfile.write(b"data: [DONE]\n\n")
                self.wfile.flush()
                self.close_connection = True

            def _send(self, code, content_type, data):
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"


def demonstrate(rater, project, text=None, *, draft=True, time_spent_ms=1000):
    """Take the next item of a demonstration project and answer it: ``text`` (default: the draft as it is),
    started from the item's draft when it has one and ``draft`` is true. Returns (assignment, annotation)."""
    assignment = next_assignment(rater, project)
    drafts = list(Response.objects.filter(pk__in=assignment.display_order).values_list("text", flat=True))
    use = bool(drafts) and draft
    payload = {"text": text if text is not None else drafts[0], **({"draft": "A"} if use else {})}
    annotation, _ = services.annotation_submit(rater=rater, item_id=assignment.item_id, payload=payload,
                                               time_spent_ms=time_spent_ms)
    return assignment, annotation


# --- servers of a test's own: a broker and a database it may stop, and the web process in front ----------------

def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(check, timeout: float, what: str, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (value := check()):
            return value
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


class OwnRedis:
    """A redis-server on a free loopback port, in memory only, that a test stops and starts again."""

    def __init__(self, directory: Path):
        self.directory, self.port, self.proc = directory, free_port(), None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def ping(self) -> bool:
        import socket

        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def start(self) -> "OwnRedis":
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.directory)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        wait_until(self.ping, 20, f"redis on port {self.port}")
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=20)
        self.proc = None


class OwnPostgres:
    """A PostgreSQL cluster of the test's own (initdb into a temporary directory, a free port), to restart at will.

    Runs as the ``postgres`` user when the tests run as root (PostgreSQL refuses to run as root)."""

    def __init__(self):
        import glob
        import tempfile

        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
        if not found:
            pytest.skip("no PostgreSQL server binaries under /usr/lib/postgresql")
        self.bin = Path(found[-1]).parent
        self.user = "postgres" if os.geteuid() == 0 else None
        self.directory = Path(tempfile.mkdtemp(prefix="ps-own-pg-"))
        self.data = self.directory / "data"
        self.port = free_port()
        self.url = f"postgres://postgres@127.0.0.1:{self.port}/ps"
        if self.user:
            shutil.chown(self.directory, user=self.user)

    def _run(self, *args, check=True, timeout=120):
        return subprocess.run([str(self.bin / args[0]), *args[1:]], user=self.user, cwd=self.directory,
                              capture_output=True, text=True, check=check, timeout=timeout)

    def init(self) -> "OwnPostgres":
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
        self.start()
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "ps")
        return self

    def _server_options(self) -> list[str]:
        # -l: the server's output goes to a file, not to pg_ctl's pipes (which would then never close)
        return ["-l", str(self.directory / "server.log"), "-o",
                f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 -c fsync=off "
                "-c synchronous_commit=off -c full_page_writes=off"]

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-w", "-t", "60", *self._server_options(), "start")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "-t", "60", "stop", check=False)

    def restart(self) -> float:
        """Restart it (fast shutdown: every connection is cut); returns how long it was away."""
        started = time.monotonic()
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "-t", "60", *self._server_options(), "restart")
        return time.monotonic() - started

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)

    def log(self) -> str:
        path = self.directory / "server.log"
        return path.read_text(errors="replace") if path.exists() else ""


class WebServer:
    """``gunicorn config.wsgi`` as in production (DEBUG off), on a free loopback port, with ``env`` for its settings."""

    def __init__(self, env: dict, log_path: Path, threads: int = 8):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings_test", **env,
               "DEBUG": "false", "SECRET_KEY": "test-only-" + "k" * 40, "ALLOWED_HOSTS": "127.0.0.1",
               "SECURE_COOKIES": "false", "WEB_CONCURRENCY": "1", "WEB_THREADS": str(threads)}
        with open(log_path, "w") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "config.wsgi", "-c", "config/gunicorn.conf.py",
                 "-b", f"127.0.0.1:{self.port}", "--access-logfile", "-"],
                env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        wait_until(self._answers, 60, f"gunicorn on port {self.port}:\n{self.log_tail()}")

    def _answers(self) -> bool:
        import httpx2

        if self.proc.poll() is not None:
            pytest.fail(f"gunicorn exited:\n{self.log_tail()}")
        try:
            return httpx2.get(self.url + "/accounts/login/", timeout=2).status_code == 200
        except httpx2.HTTPError:
            return False

    def log_tail(self, n: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:]) if self.log_path.exists() else ""

    def stop(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=30)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def token_client(base_url: str, user):
    """An HTTP client of the live server signed in with ``user``'s API token."""
    import httpx2

    key = Token.objects.get_or_create(user=user)[0].key
    return httpx2.Client(base_url=base_url, headers={"Authorization": f"Token {key}"}, timeout=30)


def seed_stack(*, items: int = 1500, raters: int = 4) -> dict:
    """What a live-stack test needs in a database of its own (run in a ``manage.py shell`` of that stack): an admin
    and raters with API tokens, a pairwise project of ``items`` items (overlap 1) the raters belong to, and a
    preference snapshot to train on. Returns their tokens and ids."""
    from tests.factories import AdminFactory

    admin = AdminFactory()
    project = make_project("pairwise", overlap=1, gold_rate=0.0)
    rows = "".join(json.dumps({"id": f"q{i}", "prompt": f"Question {i} about {TOPICS[i % len(TOPICS)]}?",
                               "responses": [f"A kind answer {i}.", f"No. {i}."]}) + "\n" for i in range(items))
    import_items(project=project, stream=io.BytesIO(rows.encode()), filename="items.jsonl")
    people = [add_member(project, UserFactory()) for _ in range(raters)]
    snapshot = make_snapshot(rows=preference_rows(64))
    return {
        "admin": Token.objects.get_or_create(user=admin)[0].key,
        "raters": [Token.objects.get_or_create(user=user)[0].key for user in people],
        "project": project.pk, "snapshot": snapshot.pk,
    }


def stack_command(env: dict, *args: str, timeout: float = 300) -> str:
    """``python manage.py ARGS`` with a live stack's settings; returns its output."""
    done = subprocess.run([sys.executable, "manage.py", *args], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)
    if done.returncode:
        pytest.fail(f"manage.py {' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done.stdout


def bench_module(path: str):
    """A benchmark script under bench/ (``"training/gpu.py"``) imported as a module, for tests of its pieces."""
    import importlib.util

    file = Path(__file__).resolve().parents[1] / "bench" / path
    spec = importlib.util.spec_from_file_location(f"bench_{file.stem}", file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
