"""Import benchmark: 100k prompts x 2 responses (JSONL) into a pairwise project on PostgreSQL.

    .venv/bin/python bench/import_bench.py [--prompts 100000]

Reports prompts/s for a first import and for a re-import of the same file (which creates nothing).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time

from common import bench_env, cpu_probe, cpu_ticks, recreate_database, setup_django, steal_pct, write_result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=100_000)
    args = parser.parse_args()
    env = bench_env("ps_bench_import")
    recreate_database(env)
    setup_django(env)
    from annotation.importer import import_items
    from annotation.models import Item
    from annotation.services import project_create

    project = project_create(name="import bench", mode="pairwise", config={"overlap": 3})
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as f:
        for i in range(args.prompts):
            f.write(json.dumps({
                "id": f"q{i}",
                "prompt": f"Question number {i}: how would you explain recursion to a new programmer?",
                "responses": [{"text": f"Recursion is when a function calls itself ({i}).", "model": "model-a"},
                              {"text": f"Think of Russian dolls: each holds a smaller one ({i}).", "model": "model-b"}],
            }) + "\n")
        path = f.name
    load_before, probe = os.getloadavg()[0], cpu_probe()
    ticks, t0 = cpu_ticks(), time.perf_counter()
    with open(path, "rb") as stream:
        first = import_items(project=project, stream=stream, filename=path)
    first_s, first_steal = time.perf_counter() - t0, steal_pct(ticks)
    t0 = time.perf_counter()
    with open(path, "rb") as stream:
        again = import_items(project=project, stream=stream, filename=path)
    again_s = time.perf_counter() - t0
    os.unlink(path)
    assert Item.objects.filter(project=project).count() == args.prompts
    write_result("import", {
        "prompts": args.prompts, "responses_per_prompt": 2,
        "first_import_s": round(first_s, 2), "prompts_per_s": round(args.prompts / first_s),
        "reimport_s": round(again_s, 2), "reimport_prompts_per_s": round(args.prompts / again_s),
        "created": first.as_dict(), "reimport": again.as_dict(),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "load_avg_1m_before": round(load_before, 2), "cpu_probe_s": probe, "first_import_cpu_steal_pct": first_steal,
        "label_studio_1_23_same_machine_tasks_per_s": 5600,
    })


if __name__ == "__main__":
    main()
