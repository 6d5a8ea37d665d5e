"""Shared set-up for benchmarks: a dedicated PostgreSQL database, Django configured against it."""
from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"


def bench_env(db: str = "ps_bench") -> dict:
    env = dict(os.environ)
    env.setdefault("DATABASE_URL", f"postgres://postgres@127.0.0.1:5432/{db}")
    env.setdefault("CELERY_BROKER_URL", "redis://127.0.0.1:6379/9")
    env.setdefault("PS_VAR_DIR", str(ROOT / "var" / "bench"))
    env["DEBUG"] = "false"
    env["SECRET_KEY"] = env.get("SECRET_KEY", "bench-only-secret-key-" + "x" * 40)
    env["DJANGO_SETTINGS_MODULE"] = "config.settings"
    env["OMP_NUM_THREADS"] = "1"
    return env


def recreate_database(env: dict) -> None:
    """Drop and create the bench database, then migrate it."""
    name = env["DATABASE_URL"].rsplit("/", 1)[1]
    subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'],
                   check=True)
    subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc", f'CREATE DATABASE "{name}"'], check=True)
    subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0", "--noinput"], cwd=ROOT, env=env, check=True)


def settle() -> None:
    """Write out what seeding left dirty (PostgreSQL's buffers, then the kernel's page cache), so a
    measurement that follows does not pay for the seed's writes."""
    subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc", "CHECKPOINT"], check=True)
    os.sync()


def cpu_probe() -> float:
    """Seconds for a fixed pure-Python loop: how fast this machine runs Python right now. On a shared
    virtual machine it moves by 10% or more within an hour; runs are comparable when it is close."""
    started = time.perf_counter()
    total = 0
    for i in range(5_000_000):
        total += i
    return round(time.perf_counter() - started, 3)


def cpu_ticks() -> tuple[int, int]:
    """(stolen, all) clock ticks of every core so far, from /proc/stat. On a virtual machine, "steal" is
    time the hypervisor gave to other guests while this one had work: a slow run with high steal was a
    busy host, not slower code."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return fields[7], sum(fields)


def steal_pct(since: tuple[int, int]) -> float:
    """Share of the cores' time stolen by the hypervisor since the ``cpu_ticks()`` reading ``since``."""
    stolen, total = cpu_ticks()
    return round(100 * (stolen - since[0]) / max(total - since[1], 1), 1)


def setup_django(env: dict) -> None:
    os.environ.update(env)
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def write_result(name: str, data: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    data = {"benchmark": name, "when": time.strftime("%Y-%m-%dT%H:%M:%S"), "machine": machine(), **data}
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(data, indent=2))
    print(json.dumps(data, indent=2))
    return path


def machine() -> str:
    return f"{os.cpu_count()} cores, {os.uname().machine}, {os.uname().sysname}"


@contextmanager
def gunicorn(env: dict, port: int, *, code: Path = ROOT, workers: int = 2, worker_class: str = "gthread",
             threads: int = 8):
    """A gunicorn serving the code of the tree ``code`` on 127.0.0.1:``port`` with persistent database
    connections, once it answers; stopped on leaving."""
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "config.wsgi", "-c", "config/gunicorn.conf.py", "-b", f"127.0.0.1:{port}",
         "-w", str(workers), "--worker-class", worker_class, "--threads", str(threads), "--keep-alive", "75",
         "--log-level", "warning"],
        cwd=code, env=env | {"CONN_MAX_AGE": "600", "LOG_LEVEL": "WARNING", "PYTHONPATH": str(code)},
    )
    try:
        for _ in range(300):
            try:
                http.client.HTTPConnection("127.0.0.1", port, timeout=1).request("GET", "/accounts/login/")
                break
            except OSError:
                time.sleep(0.2)
        yield server
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)
