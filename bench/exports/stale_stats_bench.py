"""Export, quality, queue and dashboards right after annotating through the API, with no ANALYZE since: plans on
stale statistics.

    .venv/bin/python bench/exports/stale_stats_bench.py [--prompts 40000] [--raters 16] [--leases 300]

1. A fresh database (``ps_bench_stale``): a pairwise project (overlap 1) of ``--prompts`` imported prompts (the
   import ANALYZEs its own tables; the annotation table is still empty then). With ``--import-batch 999`` the
   prompts come in files of 999, under the 1,000 from which an import used to ANALYZE (a project built by small
   imports, whose item tables then had no statistics either).
2. ``--raters`` raters annotate every item through the API (gunicorn, token clients, next + submit) until the
   queue is empty. This PostgreSQL runs with autovacuum off, so the annotation table has no statistics; a busy
   production server's lag behind a burst of annotations is the same case.
3. Imports ``2 * (--leases + 3)`` more prompts (too few for the import's ANALYZE), so the queue has open items
   again.
4. Times, in-process: a TRL JSONL export (every row), the project's quality report (uncached), and the admin pages
   and API that aggregate over annotations (the dashboard overview, the project page, the quality page, the stats
   API; Django's test client, caches cleared first); then ``--leases`` next + submit round trips through the API
   by one rater (the latency of each ``next``, i.e. ps_next_lease, p50 / p95; the first few not counted). Code and
   templates are loaded first, on an empty project.
5. ANALYZEs every table and times all of it again (the queue on the other half of the open items).

Results go to bench/results/exports_stale_stats.json (exports_stale_stats_import_batch.json with
``--import-batch``).
"""
from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from common import (bench_env, gunicorn, percentile, recreate_database, settle, setup_django,  # noqa: E402
                    write_result)
from hotpath import Client  # noqa: E402

PORT = 8766


def seed(prompts: int, raters: int, batch: int) -> tuple[object, list[str]]:
    from django.contrib.auth import get_user_model
    from rest_framework.authtoken.models import Token

    from annotation.importer import import_items
    from annotation.models import Membership
    from annotation.services import project_create

    project = project_create(name="stale", mode="pairwise", config={"overlap": 1, "criteria": []})
    for start in range(0, prompts, batch):
        rows = "".join(json.dumps({"id": f"s{i}", "prompt": f"Question {i}: explain something.",
                                   "responses": [f"Answer A {i} " * 8, f"Answer B {i} " * 8]}) + "\n"
                       for i in range(start, min(start + batch, prompts)))
        import_items(project=project, stream=io.BytesIO(rows.encode()), filename="stale.jsonl")
    tokens = []
    for i in range(raters):
        user = get_user_model().objects.create(username=f"stale-rater-{i}")
        Membership.objects.create(project=project, user=user)
        tokens.append(Token.objects.create(user=user).key)
    return project, tokens


async def annotate(project_id: int, tokens: list[str]) -> int:
    """Every rater takes and answers items until the queue is empty; returns how many were answered."""
    import hotpath

    hotpath.PORT = PORT
    done = 0

    async def rater(client: Client):
        nonlocal done
        while await client.round_trip(project_id):
            done += 1

    clients = [Client(t) for t in tokens]
    try:
        await asyncio.gather(*(rater(c) for c in clients))
    finally:
        for c in clients:
            c.close()
    return done


def timed_export(project) -> dict:
    from annotation.exports import export_rows, parse_options

    options = parse_options({"kind": "trl", "format": "jsonl"}, project=project)
    started = time.perf_counter()
    rows = 0
    for row in export_rows(project, options):
        json.dumps(row, default=str)
        rows += 1
    seconds = time.perf_counter() - started
    return {"rows": rows, "seconds": round(seconds, 2), "rows_per_s": round(rows / seconds)}


def timed_quality(project) -> dict:
    from annotation.quality import project_quality

    started = time.perf_counter()
    report = project_quality(project)
    return {"seconds": round(time.perf_counter() - started, 2),
            "annotations": (report.get("agreement") or {}).get("annotations")}


PAGES = {
    "dashboard overview": "/manage/dashboard/",
    "project page": "/manage/{id}/",
    "quality page": "/manage/{id}/quality/",
    "stats API": "/api/v1/projects/{id}/stats/",
}


def timed_pages(project, admin) -> dict:
    """Each page's server-side time (view, queries, template), in-process, with the quality cache cleared."""
    from django.core.cache import cache
    from django.test import Client as TestClient

    client = TestClient()
    client.force_login(admin)
    out = {}
    for name, path in PAGES.items():
        cache.clear()
        started = time.perf_counter()
        response = client.get(path.format(id=project.pk), secure=True)
        seconds = time.perf_counter() - started
        if response.status_code != 200:
            raise RuntimeError(f"{name}: {response.status_code}")
        out[name] = round(seconds, 3)
    return out


WARM_LEASES = 3  # round trips not counted: a new gunicorn worker's first requests load code


async def leases(project_id: int, token: str, n: int) -> dict:
    """``n`` next + submit round trips by one rater (after ``WARM_LEASES``); the latency of each next
    (ps_next_lease)."""
    import hotpath

    hotpath.PORT = PORT
    client = Client(token)
    latencies = []
    try:
        for _ in range(WARM_LEASES + n):
            started = time.perf_counter()
            status, body = await client.request("GET", f"/api/v1/projects/{project_id}/next/")
            latencies.append(time.perf_counter() - started)
            if status != 200:
                raise RuntimeError(f"next: {status} {body[:200]!r}")
            item = json.loads(body)["item"]
            status, body = await client.request("POST", f"/api/v1/items/{item['id']}/annotations/", {
                "payload": {"choice": "A", "strength": "slight"}, "idempotency_key": f"q{project_id}-{item['id']}",
                "time_spent_ms": 1000})
            if status not in (200, 201):
                raise RuntimeError(f"submit: {status} {body[:200]!r}")
    finally:
        client.close()
    latencies = latencies[WARM_LEASES:]
    return {"calls": n, "p50_ms": round(1000 * percentile(latencies, 50), 1),
            "p95_ms": round(1000 * percentile(latencies, 95), 1), "max_ms": round(1000 * max(latencies), 1)}


def warm_up(admin) -> None:
    """Load the code and templates of every operation on an empty project first, so the first measurement
    does not pay for them."""
    from annotation.services import project_create

    empty = project_create(name="warm-up", mode="pairwise", config={"overlap": 1, "criteria": []})
    timed_export(empty)
    timed_quality(empty)
    timed_pages(empty, admin)


def measure(project, admin, token: str, n_leases: int, env: dict) -> dict:
    from django.db import connections

    out = {"export": timed_export(project)}
    print(f"  export: {out['export']}", flush=True)
    out["quality"] = timed_quality(project)
    print(f"  quality: {out['quality']}", flush=True)
    out["pages_s"] = timed_pages(project, admin)
    print(f"  pages: {out['pages_s']}", flush=True)
    connections.close_all()
    with gunicorn(env, PORT):
        out["next_lease"] = asyncio.run(leases(project.pk, token, n_leases))
    print(f"  next lease: {out['next_lease']}", flush=True)
    return out


def item_statistics() -> bool:
    """Whether the items table has statistics (an import ANALYZEs it when it is large for the table)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) > 0 FROM pg_stats WHERE tablename = 'annotation_item'")
        return cursor.fetchone()[0]


def annotation_statistics() -> dict:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT last_analyze, last_autoanalyze, n_mod_since_analyze FROM pg_stat_user_tables "
                       "WHERE relname = 'annotation_annotation'")
        last, auto, changed = cursor.fetchone()
        cursor.execute("SHOW autovacuum")
        (autovacuum,) = cursor.fetchone()
    return {"analyzed": bool(last or auto), "rows_changed_since_analyze": changed, "autovacuum": autovacuum}


def more_prompts(project, n: int) -> None:
    from annotation.importer import import_items

    rows = "".join(json.dumps({"id": f"q{i}", "prompt": f"Queue question {i}: explain something.",
                               "responses": [f"Answer A {i} " * 8, f"Answer B {i} " * 8]}) + "\n"
                   for i in range(n))
    import_items(project=project, stream=io.BytesIO(rows.encode()), filename="queue.jsonl")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=40_000)
    parser.add_argument("--raters", type=int, default=16)
    parser.add_argument("--leases", type=int, default=300)
    parser.add_argument("--import-batch", type=int, default=0,
                        help="import the prompts in files of this many (999: under the 1,000 prompts from which an "
                             "import used to ANALYZE); default: one file")
    parser.add_argument("--keep-stale-copy", action="store_true",
                        help="leave a copy of the database as it was before the measurements (ps_bench_stale_copy), "
                             "to EXPLAIN its queries")
    args = parser.parse_args()
    env = bench_env("ps_bench_stale")
    env["DATABASE_URL"] = "postgres://postgres@127.0.0.1:5432/ps_bench_stale"  # never a shared database
    recreate_database(env)
    setup_django(env)
    from django.contrib.auth import get_user_model
    from django.db import connection, connections

    project, tokens = seed(args.prompts, args.raters, args.import_batch or args.prompts)
    admin = get_user_model().objects.create(username="stale-admin", is_staff=True, is_superuser=True)
    connections.close_all()
    settle()
    load_before = os.getloadavg()
    with gunicorn(env, PORT):
        started = time.perf_counter()
        answered = asyncio.run(annotate(project.pk, tokens))
        annotate_s = time.perf_counter() - started
    more_prompts(project, 2 * (args.leases + WARM_LEASES))
    if args.keep_stale_copy:  # a copy keeps pg_statistic as it is: nothing for the annotations
        connections.close_all()
        subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc",
                        "DROP DATABASE IF EXISTS ps_bench_stale_copy WITH (FORCE)",
                        "-qc", "CREATE DATABASE ps_bench_stale_copy TEMPLATE ps_bench_stale"], check=True)
    stale = annotation_statistics()
    stale_items = item_statistics()
    print(f"annotated {answered} in {annotate_s:.0f} s; statistics: {stale}, items analyzed: {stale_items}",
          flush=True)
    warm_up(admin)
    print("no statistics:", flush=True)
    before = measure(project, admin, tokens[0], args.leases, env)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    print("after ANALYZE:", flush=True)
    after = measure(project, admin, tokens[0], args.leases, env)
    write_result("exports_stale_stats" + ("_import_batch" if args.import_batch else ""), {
        "prompts": args.prompts, "import_batch": args.import_batch or args.prompts,
        "item_tables_analyzed": stale_items, "annotated_through_the_api": answered, "annotate_s": round(annotate_s, 1),
        "annotation_statistics_before_export": stale, "without_statistics": before, "after_analyze": after,
        "load_average_before_annotating": load_before, "load_average": os.getloadavg(),
    })


if __name__ == "__main__":
    main()
