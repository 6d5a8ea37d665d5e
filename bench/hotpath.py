"""Load test of the rater hot path (next + submit) against gunicorn + PostgreSQL, on loopback only.

Closed loop: C clients with no think time for D seconds -> round trips/s and latency percentiles.
Open loop: R simulated raters, each waiting T seconds between round trips -> latency percentiles.
Every loop is bounded in count and time and stops by itself.

    .venv/bin/python bench/hotpath.py [--clients 16] [--duration 20] [--raters 256] [--think 2]

Against earlier code, interleaved: its server and this one take turns (A B B A ...), each on a freshly seeded
database, under this load generator; the result gives the medians of both sides and their ratio.

    git worktree add /tmp/before <commit>
    .venv/bin/python bench/hotpath.py --compare-with /tmp/before --pairs 3
"""
from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import json
import os
import random
import time
from pathlib import Path

from common import (ROOT, bench_env, cpu_probe, cpu_ticks, gunicorn, percentile, recreate_database, settle,
                    setup_django, steal_pct, write_result)

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
    from django.db import connections

    connections.close_all()  # the next turn drops this database
    return project.pk, tokens


class _Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection: bytes in, one response at a time out (status, body, close?)."""

    def __init__(self):
        self.transport = None
        self.buffer = b""
        self.waiting: asyncio.Future | None = None

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data: bytes):
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0 or self.waiting is None:
            return
        head = self.buffer[:end].lower()
        at = head.find(b"\r\ncontent-length:")
        length = int(head[at + 17:].split(b"\r\n", 1)[0]) if at >= 0 else 0
        if len(self.buffer) < end + 4 + length:
            return
        body, self.buffer = self.buffer[end + 4:end + 4 + length], self.buffer[end + 4 + length:]
        waiting, self.waiting = self.waiting, None
        waiting.set_result((int(head[9:12]), body, b"\r\nconnection: close" in head))

    def connection_lost(self, exc):
        if self.waiting is not None and not self.waiting.done():
            self.waiting.set_exception(ConnectionError("connection closed"))
        self.transport = None


class Client:
    """One rater's keep-alive connection, on asyncio's protocol layer: the load generator shares the
    server's two cores, so it does as little per request as it can (no thread per rater, no HTTP library,
    no stream reader)."""

    def __init__(self, token: str):
        self.token = token
        self.connection: _Connection | None = None

    def close(self):
        if self.connection is not None and self.connection.transport is not None:
            self.connection.transport.close()
        self.connection = None

    async def request(self, method: str, path: str, body: dict | None = None) -> tuple[int, bytes]:
        data = json.dumps(body).encode() if body is not None else b""
        head = (f"{method} {path} HTTP/1.1\r\nHost: {HOST}:{PORT}\r\nAuthorization: Token {self.token}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n").encode()
        loop = asyncio.get_running_loop()
        for attempt in range(2):
            try:
                if self.connection is None or self.connection.transport is None:
                    _transport, self.connection = await loop.create_connection(_Connection, HOST, PORT)
                self.connection.waiting = loop.create_future()
                self.connection.transport.write(head + data)
                status, payload, close = await self.connection.waiting
                if close:
                    self.close()
                return status, payload
            except (ConnectionError, ValueError):
                self.close()  # the server closed an idle connection: open a new one, once
                if attempt:
                    raise
        raise RuntimeError("unreachable")

    async def round_trip(self, project_id: int) -> bool:
        """next + submit; False when the queue is empty for this rater."""
        status, body = await self.request("GET", f"/api/v1/projects/{project_id}/next/")
        if status == 204:
            return False
        if status != 200:
            raise RuntimeError(f"next: {status} {body[:200]!r}")
        item = json.loads(body)["item"]
        payload = {"choice": random.choice("AB"), "strength": "slight"}
        status, body = await self.request("POST", f"/api/v1/items/{item['id']}/annotations/",
                                          {"payload": payload, "idempotency_key": f"k{next(KEYS)}",
                                           "time_spent_ms": 1000})
        if status not in (200, 201):
            raise RuntimeError(f"submit: {status} {body[:200]!r}")
        return True


async def _loop(project_id: int, tokens: list[str], n: int, duration: float, think: float,
                warmup: float = 0.0) -> dict:
    """n raters for ``warmup`` + ``duration`` seconds; each waits an exponential think time (mean ``think``,
    none when 0) between round trips. Only round trips that start inside the measured window (after the
    warm-up) count."""
    latencies: list[float] = []
    errors: list[str] = []
    begin = time.monotonic()
    started = begin + warmup
    stop = started + duration

    async def rater(client: Client):
        if think:
            await asyncio.sleep(random.uniform(0, think))  # spread the start
        while (begun := time.monotonic()) < stop:
            t0 = time.perf_counter()
            try:
                if not await client.round_trip(project_id):
                    return
            except Exception as exc:  # noqa: BLE001 - reported in the result
                errors.append(str(exc))
                return
            if begun >= started:
                latencies.append(time.perf_counter() - t0)
            if think:
                await asyncio.sleep(min(random.expovariate(1 / think), max(stop - time.monotonic(), 0)))

    clients = [Client(tokens[i % len(tokens)]) for i in range(n)]
    gc.collect()
    gc.disable()  # a collection in the load generator would be counted as the server's latency
    try:
        await asyncio.wait_for(asyncio.gather(*(rater(c) for c in clients)), warmup + duration + 60)
    finally:
        gc.enable()
        for c in clients:
            c.close()
    return summary(latencies, time.monotonic() - started, errors) | {"warmup_s": warmup}


def closed_loop(project_id: int, tokens: list[str], clients: int, duration: float) -> dict:
    return asyncio.run(_loop(project_id, tokens, clients, duration, 0)) | {"clients": clients}


def open_loop(project_id: int, tokens: list[str], raters: int, think: float, duration: float) -> dict:
    """Measured after a warm-up of two think times: the raters start spread over the first one, so until
    then the offered load is not yet steady (and every rater opens its connection)."""
    return asyncio.run(_loop(project_id, tokens, raters, duration, think, warmup=2 * think)) | {
        "raters": raters, "think_s": think}


def summary(latencies: list[float], elapsed: float, errors: list[str]) -> dict:
    ms = [x * 1000 for x in latencies]
    return {
        "round_trips": len(ms), "seconds": round(elapsed, 2), "round_trips_per_s": round(len(ms) / elapsed, 1),
        "p50_ms": round(percentile(ms, 50), 1), "p95_ms": round(percentile(ms, 95), 1),
        "p99_ms": round(percentile(ms, 99), 1), "errors": len(errors), "first_error": errors[0] if errors else None,
    }


def cpu_seconds(server_pid: int) -> dict[str, float]:
    """CPU time (user + system) so far of the web server's processes, PostgreSQL's and this load generator."""
    tick = os.sysconf("SC_CLK_TCK")
    totals = {"web": 0.0, "postgresql": 0.0, "load_generator": 0.0}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        pid = int(stat.parent.name)
        comm = text[text.index("(") + 1:text.rindex(")")]
        fields = text[text.rindex(")") + 2:].split()
        used = (int(fields[11]) + int(fields[12])) / tick
        if pid == os.getpid():
            totals["load_generator"] += used
        elif pid == server_pid or int(fields[1]) == server_pid:
            totals["web"] += used
        elif comm.startswith("postgres"):
            totals["postgresql"] += used
    return totals


def cpu_per_round_trip(before: dict, after: dict, round_trips: int) -> dict:
    return {f"{name}_ms": round((after[name] - before[name]) / max(round_trips, 1) * 1000, 2) for name in before}


def measure(args, project_id: int, tokens: list[str], code: Path) -> dict:
    """Both loops against a gunicorn serving the code of the tree ``code`` (this one, or another checkout
    with the same schema, for an interleaved comparison) on the seeded database."""
    settle()
    probe = cpu_probe()
    with gunicorn(bench_env(), PORT, code=code, workers=args.workers, worker_class=args.worker_class,
                  threads=args.threads) as server:
        closed_loop(project_id, tokens[:4], 4, 3)  # warm up every worker
        load = os.getloadavg()
        before, ticks = cpu_seconds(server.pid), cpu_ticks()
        closed = closed_loop(project_id, tokens, args.clients, args.duration)
        closed["cpu_per_round_trip"] = cpu_per_round_trip(before, cpu_seconds(server.pid), closed["round_trips"])
        closed["cpu_steal_pct"] = steal_pct(ticks)
        before, ticks = cpu_seconds(server.pid), cpu_ticks()
        opened = open_loop(project_id, tokens, args.raters, args.think, args.duration)
        opened["cpu_per_round_trip"] = cpu_per_round_trip(before, cpu_seconds(server.pid), opened["round_trips"])
        opened["cpu_steal_pct"] = steal_pct(ticks)
    return {"code": str(code), "closed_loop": closed, "open_loop": opened, "load_average_before": load,
            "cpu_probe_s": probe}


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def compare(runs: list[dict], this: Path, other: Path) -> dict:
    """Medians of each side's runs and this code's ratio to the other's (above 1: this code does more round
    trips per second, or spends more CPU per round trip, or has a slower p95)."""
    figures = {
        "closed_round_trips_per_s": lambda r: r["closed_loop"]["round_trips_per_s"],
        "closed_web_cpu_ms": lambda r: r["closed_loop"]["cpu_per_round_trip"]["web_ms"],
        "closed_postgresql_cpu_ms": lambda r: r["closed_loop"]["cpu_per_round_trip"]["postgresql_ms"],
        "open_p95_ms": lambda r: r["open_loop"]["p95_ms"],
        "open_web_cpu_ms": lambda r: r["open_loop"]["cpu_per_round_trip"]["web_ms"],
    }
    out = {}
    for name, read in figures.items():
        mine = _median([read(r) for r in runs if r["code"] == str(this)])
        theirs = _median([read(r) for r in runs if r["code"] == str(other)])
        out[name] = {"this": round(mine, 2), "other": round(theirs, 2), "ratio": round(mine / theirs, 3)}
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--duration", type=float, default=20)
    parser.add_argument("--raters", type=int, default=256)
    parser.add_argument("--think", type=float, default=2.0)
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--worker-class", default="gthread")
    parser.add_argument("--compare-with", type=Path, default=None,
                        help="another checkout (a git worktree of an earlier commit): its server and this one "
                             "take turns, each on a freshly seeded database, with this load generator")
    parser.add_argument("--pairs", type=int, default=3, help="turns of each side with --compare-with")
    parser.add_argument("--port", type=int, default=PORT)
    args = parser.parse_args()
    globals()["PORT"] = args.port

    env = bench_env()
    sides = [ROOT]
    if args.compare_with is not None:
        other = args.compare_with.resolve()
        sides = []
        for pair in range(args.pairs):  # ABBA...: a drift of the machine falls on both sides alike
            sides += [ROOT, other] if pair % 2 == 0 else [other, ROOT]
    runs = []
    for code in sides:
        recreate_database(env)
        project_id, tokens = seed(env, args.items, max(args.clients, args.raters))
        runs.append(measure(args, project_id, tokens, code))
        print(json.dumps({"code": str(code), "closed_round_trips_per_s": runs[-1]["closed_loop"]["round_trips_per_s"],
                          "open_p95_ms": runs[-1]["open_loop"]["p95_ms"]}), flush=True)
    result = {
        "gunicorn": f"{args.workers} {args.worker_class} workers x {args.threads} threads",
        "label_studio_1_23_same_machine": {"submits_per_s_8_clients": 19, "p95_ms": 680, "next_p50_ms": 72},
    }
    if args.compare_with is None:
        (run,) = runs
        result |= run | {"ratio_vs_label_studio": round(run["closed_loop"]["round_trips_per_s"] / 19, 1)}
    else:
        result |= {"runs": runs, "compared": compare(runs, ROOT, args.compare_with.resolve())}
    write_result("hotpath" if args.compare_with is None else "hotpath_interleaved", result)


if __name__ == "__main__":
    main()
