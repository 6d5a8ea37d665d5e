"""Load test of the rater hot path (next + submit) against gunicorn + PostgreSQL, on loopback only.

Closed loop: C clients with no think time for D seconds -> round trips/s and latency percentiles.
Open loop: R simulated raters, each waiting T seconds between round trips -> latency percentiles.
Every loop is bounded in count and time and stops by itself.

    .venv/bin/python bench/hotpath.py [--clients 16] [--duration 20] [--raters 256] [--think 2]
"""
from __future__ import annotations

import argparse
import http.client
import itertools
import json
import random
import signal
import subprocess
import sys
import threading
import time

from common import ROOT, bench_env, percentile, recreate_database, setup_django, write_result

HOST, PORT = "127.0.0.1", 8765
KEYS = itertools.count()  # idempotency keys, unique across every loop of one run


def seed(env: dict, items: int, raters: int) -> tuple[int, list[str]]:
    setup_django(env)
    from django.contrib.auth import get_user_model
    from rest_framework.authtoken.models import Token

    from annotation.bulk import bulk_insert
    from annotation.importer import import_items
    from annotation.models import Membership
    from annotation.services import project_create

    project = project_create(name="bench", mode="pairwise", config={"overlap": 3, "criteria": []})
    rows = "".join(
        json.dumps({"id": f"b{i}", "prompt": f"Benchmark question {i}: explain something in detail.",
                    "responses": [f"Answer A {i} " * 20, f"Answer B {i} " * 20]}) + "\n"
        for i in range(items)
    )
    import io

    import_items(project=project, stream=io.BytesIO(rows.encode()), filename="bench.jsonl")
    User = get_user_model()
    users = [User(username=f"rater{i}") for i in range(raters)]
    User.objects.bulk_create(users)
    users = list(User.objects.filter(username__startswith="rater"))
    bulk_insert(Membership, ["project_id", "user_id", "is_paused", "paused_reason", "gold_since", "created_at"],
                [(project.pk, u.pk, False, "", None, None) for u in users], returning=False)
    tokens = [Token.objects.create(user=u).key for u in users]
    return project.pk, tokens


class Client:
    def __init__(self, token: str):
        self.conn = http.client.HTTPConnection(HOST, PORT, timeout=30)
        self.headers = {"Authorization": f"Token {token}", "Content-Type": "application/json"}

    def request(self, method: str, path: str, body: dict | None = None) -> tuple[int, bytes]:
        for attempt in range(2):
            try:
                self.conn.request(method, path, body=json.dumps(body) if body is not None else None,
                                  headers=self.headers)
                response = self.conn.getresponse()
                return response.status, response.read()
            except (ConnectionError, http.client.HTTPException):
                self.conn.close()
                self.conn = http.client.HTTPConnection(HOST, PORT, timeout=30)
                if attempt:
                    raise
        raise RuntimeError("unreachable")

    def round_trip(self, project_id: int) -> bool:
        """next + submit; False when the queue is empty for this rater."""
        status, body = self.request("GET", f"/api/v1/projects/{project_id}/next/")
        if status == 204:
            return False
        if status != 200:
            raise RuntimeError(f"next: {status} {body[:200]!r}")
        item = json.loads(body)["item"]
        payload = {"choice": random.choice("AB"), "strength": "slight"}
        status, body = self.request("POST", f"/api/v1/items/{item['id']}/annotations/",
                                    {"payload": payload, "idempotency_key": f"k{next(KEYS)}", "time_spent_ms": 1000})
        if status not in (200, 201):
            raise RuntimeError(f"submit: {status} {body[:200]!r}")
        return True


def closed_loop(project_id: int, tokens: list[str], clients: int, duration: float) -> dict:
    latencies: list[float] = []
    errors: list[str] = []
    stop = time.monotonic() + duration
    lock = threading.Lock()

    def run(token: str, n: int):
        client = Client(token)
        while time.monotonic() < stop:
            t0 = time.perf_counter()
            try:
                if not client.round_trip(project_id):
                    return
            except Exception as exc:  # noqa: BLE001 - reported in the result
                errors.append(str(exc))
                return
            with lock:
                latencies.append(time.perf_counter() - t0)

    started = time.monotonic()
    threads = [threading.Thread(target=run, args=(tokens[i], i)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(duration + 60)
    elapsed = time.monotonic() - started
    return summary(latencies, elapsed, errors) | {"clients": clients}


def open_loop(project_id: int, tokens: list[str], raters: int, think: float, duration: float) -> dict:
    latencies: list[float] = []
    errors: list[str] = []
    stop = time.monotonic() + duration
    lock = threading.Lock()

    def run(token: str, n: int):
        client = Client(token)
        time.sleep(random.uniform(0, think))  # spread the start
        while time.monotonic() < stop:
            t0 = time.perf_counter()
            try:
                if not client.round_trip(project_id):
                    return
            except Exception as exc:  # noqa: BLE001
                errors.append(str(exc))
                return
            with lock:
                latencies.append(time.perf_counter() - t0)
            time.sleep(random.expovariate(1 / think))

    started = time.monotonic()
    threads = [threading.Thread(target=run, args=(tokens[i % len(tokens)], i), daemon=True) for i in range(raters)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(duration + 60)
    return summary(latencies, time.monotonic() - started, errors) | {"raters": raters, "think_s": think}


def summary(latencies: list[float], elapsed: float, errors: list[str]) -> dict:
    ms = [x * 1000 for x in latencies]
    return {
        "round_trips": len(ms), "seconds": round(elapsed, 2), "round_trips_per_s": round(len(ms) / elapsed, 1),
        "p50_ms": round(percentile(ms, 50), 1), "p95_ms": round(percentile(ms, 95), 1),
        "p99_ms": round(percentile(ms, 99), 1), "errors": len(errors), "first_error": errors[0] if errors else None,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--duration", type=float, default=20)
    parser.add_argument("--raters", type=int, default=256)
    parser.add_argument("--think", type=float, default=2.0)
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()

    env = bench_env()
    recreate_database(env)
    project_id, tokens = seed(env, args.items, max(args.clients, args.raters))
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "config.wsgi", "-b", f"{HOST}:{PORT}", "-w", str(args.workers),
         "--worker-class", "gthread", "--threads", "4", "--log-level", "warning"],
        cwd=ROOT, env=env | {"CONN_MAX_AGE": "600", "LOG_LEVEL": "WARNING"},
    )
    try:
        for _ in range(100):
            try:
                http.client.HTTPConnection(HOST, PORT, timeout=1).request("GET", "/api/schema/")
                break
            except OSError:
                time.sleep(0.2)
        closed_loop(project_id, tokens[:4], 4, 3)  # warm up every worker
        closed = closed_loop(project_id, tokens, args.clients, args.duration)
        opened = open_loop(project_id, tokens, args.raters, args.think, args.duration)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)
    write_result("hotpath", {
        "closed_loop": closed, "open_loop": opened, "gunicorn": f"{args.workers} gthread workers x 4 threads",
        "label_studio_1_23_same_machine": {"submits_per_s_8_clients": 19, "p95_ms": 680, "next_p50_ms": 72},
        "ratio_vs_label_studio": round(closed["round_trips_per_s"] / 19, 1),
    })


if __name__ == "__main__":
    main()
