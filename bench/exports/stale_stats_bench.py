"""Export right after annotating through the API, with no ANALYZE since: plans on stale statistics.

    .venv/bin/python bench/exports/stale_stats_bench.py [--prompts 40000] [--raters 16]

1. A fresh database (``ps_bench_stale``): a pairwise project (overlap 1) of ``--prompts`` imported prompts (the
   import ANALYZEs its own tables; the annotation table is still empty then).
2. ``--raters`` raters annotate every item through the API (gunicorn, token clients, next + submit) until the
   queue is empty. This PostgreSQL runs with autovacuum off, so the annotation table has no statistics; a busy
   production server's lag behind a burst of annotations is the same case.
3. Times a TRL JSONL export (every row, in-process), then ANALYZEs the annotation table and times it again.

Results go to bench/results/exports_stale_stats.json.
"""
from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from common import bench_env, gunicorn, recreate_database, settle, setup_django, write_result  # noqa: E402
from hotpath import Client  # noqa: E402

PORT = 8766


def seed(prompts: int, raters: int) -> tuple[object, list[str]]:
    from django.contrib.auth import get_user_model
    from rest_framework.authtoken.models import Token

    from annotation.importer import import_items
    from annotation.models import Membership
    from annotation.services import project_create

    project = project_create(name="stale", mode="pairwise", config={"overlap": 1, "criteria": []})
    rows = "".join(json.dumps({"id": f"s{i}", "prompt": f"Question {i}: explain something.",
                               "responses": [f"Answer A {i} " * 8, f"Answer B {i} " * 8]}) + "\n"
                   for i in range(prompts))
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


def annotation_statistics() -> dict:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT last_analyze, last_autoanalyze, n_mod_since_analyze FROM pg_stat_user_tables "
                       "WHERE relname = 'annotation_annotation'")
        last, auto, changed = cursor.fetchone()
        cursor.execute("SHOW autovacuum")
        (autovacuum,) = cursor.fetchone()
    return {"analyzed": bool(last or auto), "rows_changed_since_analyze": changed, "autovacuum": autovacuum}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=40_000)
    parser.add_argument("--raters", type=int, default=16)
    args = parser.parse_args()
    env = bench_env("ps_bench_stale")
    env["DATABASE_URL"] = "postgres://postgres@127.0.0.1:5432/ps_bench_stale"  # never a shared database
    recreate_database(env)
    setup_django(env)
    from django.db import connection, connections

    project, tokens = seed(args.prompts, args.raters)
    connections.close_all()
    settle()
    with gunicorn(env, PORT):
        started = time.perf_counter()
        answered = asyncio.run(annotate(project.pk, tokens))
        annotate_s = time.perf_counter() - started
    stale = annotation_statistics()
    print(f"annotated {answered} in {annotate_s:.0f} s; statistics: {stale}", flush=True)
    before = timed_export(project)
    print(f"export, no statistics: {before}", flush=True)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE annotation_annotation")
    after = timed_export(project)
    print(f"export after ANALYZE: {after}", flush=True)
    write_result("exports_stale_stats", {
        "prompts": args.prompts, "annotated_through_the_api": answered, "annotate_s": round(annotate_s, 1),
        "annotation_statistics_before_export": stale, "export_without_statistics": before,
        "export_after_analyze": after, "load_average": os.getloadavg(),
    })


if __name__ == "__main__":
    main()
