"""Export and agreement benchmark on PostgreSQL.

    .venv/bin/python bench/exports/export_bench.py [--annotations 1000000] [--agreement-items 100000] [--reuse]

1. Generates, straight into a dedicated database (``ps_bench_exports``) with COPY, a pairwise project of
   ``--annotations`` annotations (two raters per item, random display orders, strengths and criteria), and
   a second project of ``--agreement-items`` items with three raters each.
2. Runs ``manage.py export_preferences`` as a child process for each kind/format asked, and records its
   wall time and peak RSS (from the child's own rusage).
3. Times ``project_quality`` (all agreement, bias and per-rater figures) on the agreement project.

Results go to bench/results/exports.json. ``--reuse`` skips generation when the projects exist.
"""
from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from common import ROOT, bench_env, recreate_database, setup_django, write_result  # noqa: E402

BIG, AGREE = "bench-exports-1m", "bench-agreement"
RATERS = 20
WORDS = ("the model should answer clearly and kindly with a short example then explain why it works and "
         "what to try next if the first idea fails because careful steps matter more than speed").split()
STRENGTHS = ("negligible", "slight", "better", "significant")
CHUNK = 50_000


def _texts(rng: random.Random, n: int, lo: int, hi: int) -> list[str]:
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(lo, hi))) for _ in range(n)]


def generate(project, n_items: int, raters_per_item: int, raters: list[int], seed: int) -> int:
    """Items of one prompt and two responses, each annotated by ``raters_per_item`` raters, via COPY."""
    from django.db import transaction
    from django.utils import timezone

    from annotation.bulk import bulk_insert
    from annotation.models import Annotation, Item, ItemResponse, Prompt, Response

    rng = random.Random(seed)
    prompts_pool, answers_pool = _texts(rng, 2000, 8, 20), _texts(rng, 5000, 25, 60)
    now = timezone.now()
    made = 0
    for start in range(0, n_items, CHUNK):
        n = min(CHUNK, n_items - start)
        with transaction.atomic():
            prompt_ids = bulk_insert(Prompt, ["project_id", "external_id", "messages", "metadata", "round", "created_at"], [
                (project.pk, f"q{start + i}", [{"role": "user", "content": f"{rng.choice(prompts_pool)} ({start + i})"}],
                 {}, "", now) for i in range(n)])
            response_ids = bulk_insert(Response, ["prompt_id", "text", "model_name", "checkpoint_id", "params", "created_at"], [
                (pid, rng.choice(answers_pool), model, None, {}, now) for pid in prompt_ids for model in ("model-a", "model-b")])
            item_ids = bulk_insert(Item, ["project_id", "prompt_id", "is_gold", "gold_answer", "priority", "overlap",
                                          "annotations_count", "is_complete", "round", "created_at"], [
                (project.pk, pid, False, None, 0, raters_per_item, raters_per_item, True, "", now) for pid in prompt_ids])
            bulk_insert(ItemResponse, ["item_id", "response_id", "position"], [
                (item_id, response_ids[2 * i + pos], pos) for i, item_id in enumerate(item_ids) for pos in (0, 1)],
                returning=False)
            rows = []
            for i, item_id in enumerate(item_ids):
                pair = [response_ids[2 * i], response_ids[2 * i + 1]]
                for rater in rng.sample(raters, raters_per_item):
                    shown = pair[:] if rng.random() < 0.5 else pair[::-1]
                    letter = rng.choice("AAAB")  # a position bias, so the bias figures have something to find
                    r = rng.random()
                    if r < 0.05:
                        payload = {"outcome": "tie", "chosen": None, "rejected": None, "strength": None}
                        raw = {"choice": "tie"}
                    else:
                        chosen = shown[0] if letter == "A" else shown[1]
                        strength = rng.choice(STRENGTHS)
                        payload = {"outcome": "win", "chosen": chosen, "rejected": pair[0] + pair[1] - chosen,
                                   "strength": strength}
                        raw = {"choice": letter, "strength": strength}
                    payload["criteria"] = {"helpfulness": rng.choice([pair[0], pair[1], "tie"]),
                                           "safety": rng.choice([pair[0], pair[1]])}
                    payload["comment"] = ""
                    rows.append((item_id, rater, None, "human", payload, raw, shown, rng.randint(2000, 60000), None,
                                 "", now, now))
            bulk_insert(Annotation, ["item_id", "rater_id", "assignment_id", "source", "payload", "raw_payload",
                                     "display_order", "time_spent_ms", "gold_correct", "idempotency_key", "created_at",
                                     "updated_at"], rows, returning=False)
            made += len(rows)
        print(f"  {project.slug}: {start + n} items, {made} annotations", flush=True)
    return made


def run_export(env: dict, kind: str, fmt: str, style: str, out_dir: Path) -> dict:
    out = out_dir / f"{kind}-{style}.{fmt}"
    cmd = [sys.executable, "manage.py", "export_preferences", "--project", BIG, "--kind", kind, "--format", fmt,
           "--style", style, "--out", str(out)]
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    child = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - started
    stdout, stderr = child.stdout.read().decode(), child.stderr.read().decode()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"export failed: {stderr}")
    rows = int(stdout.split("Wrote ", 1)[1].split(" rows", 1)[0])
    result = {"kind": kind, "format": fmt, "style": style, "rows": rows, "wall_s": round(wall, 2),
              "rows_per_s": round(rows / wall),
              "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),  # the exporting process only, not PostgreSQL
              "peak_rss_mb": round(usage.ru_maxrss / 1024),
              "file_mb": round(out.stat().st_size / 1e6, 1), "load_average_before": round(load_before, 2),
              "output": stdout.strip().splitlines()[0]}
    out.unlink()
    print(f"  {kind}/{style}/{fmt}: {rows} rows in {wall:.1f} s ({result['cpu_s']:.1f} s CPU), "
          f"peak RSS {result['peak_rss_mb']} MB "
          f"(load average before: {load_before:.1f})", flush=True)
    return result


def cpu_split(project, kind: str, fmt: str, out_dir: Path) -> dict:
    """One export run in this process: CPU seconds of Python and of its PostgreSQL backend, apart.

    On a shared box wall time depends on the neighbours; CPU time does not. The two sides run side by
    side (COPY streams while Python writes rows), so on an idle 2-core machine the wall time is about
    the larger of the two plus start-up.
    """
    import resource

    from django.db import connection

    from annotation.exports import export_to_file, parse_options

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        backend = cursor.fetchone()[0]
    ticks = os.sysconf("SC_CLK_TCK")

    def backend_cpu() -> float:
        fields = Path(f"/proc/{backend}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / ticks  # utime + stime

    def own_cpu() -> float:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    pg0, py0, t0 = backend_cpu(), own_cpu(), time.perf_counter()
    result = export_to_file(project=project, options=parse_options({"kind": kind}, project=project), fmt=fmt,
                            path=out_dir / f"split.{fmt}")
    return {"kind": kind, "format": fmt, "rows": result.row_count, "wall_s": round(time.perf_counter() - t0, 2),
            "python_cpu_s": round(own_cpu() - py0, 2), "postgres_cpu_s": round(backend_cpu() - pg0, 2),
            "load_average_before": round(os.getloadavg()[0], 2)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--annotations", type=int, default=1_000_000)
    parser.add_argument("--agreement-items", type=int, default=100_000)
    parser.add_argument("--reuse", action="store_true", help="Keep the database if the projects are there.")
    parser.add_argument("--exports", default="trl:jsonl:standard,trl:parquet:standard,trl:jsonl:conversational,"
                                             "kto:parquet:standard,raw:jsonl:standard",
                        help="kind:format:style,... to run")
    args = parser.parse_args()
    env = bench_env("ps_bench_exports")
    env["DATABASE_URL"] = "postgres://postgres@127.0.0.1:5432/ps_bench_exports"  # never a shared database
    env["PS_VAR_DIR"] = str(ROOT / "var" / "bench-exports")
    if not args.reuse:
        recreate_database(env)
    setup_django(env)
    from django.contrib.auth import get_user_model
    from django.db import connection

    from annotation.models import Annotation, Project
    from annotation.quality import project_quality
    from annotation.services import project_create

    User = get_user_model()
    raters = [User.objects.get_or_create(username=f"bench-rater-{i}")[0].pk for i in range(RATERS)]
    generated = {}
    for slug, items, per_item in ((BIG, args.annotations // 2, 2), (AGREE, args.agreement_items, 3)):
        if Project.objects.filter(slug=slug).exists():
            continue
        project = project_create(name=slug, slug=slug, mode="pairwise", config={"overlap": per_item})
        t0 = time.perf_counter()
        made = generate(project, items, per_item, raters, seed=len(slug))
        generated[slug] = {"annotations": made, "seconds": round(time.perf_counter() - t0, 1)}
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
    big = Project.objects.get(slug=BIG)
    n_big = Annotation.objects.filter(item__project=big).count()
    print(f"export project: {n_big} annotations", flush=True)

    exports, splits = [], []
    with tempfile.TemporaryDirectory(dir=ROOT / "var") as out_dir:
        for spec in args.exports.split(","):
            kind, fmt, style = spec.split(":")
            exports.append(run_export(env, kind, fmt, style, Path(out_dir)))
        for fmt in ("jsonl", "parquet"):
            splits.append(cpu_split(big, "trl", fmt, Path(out_dir)))
            print(f"  cpu split trl/{fmt}: {splits[-1]}", flush=True)

    agree = Project.objects.get(slug=AGREE)
    load_before = os.getloadavg()[0]
    t0 = time.perf_counter()
    report = project_quality(agree)
    agreement_s = time.perf_counter() - t0
    print(f"agreement over {report['agreement']['items']} items: {agreement_s:.1f} s", flush=True)
    write_result("exports", {
        "export_project_annotations": n_big,
        "generated": generated,
        "exports": exports,
        "cpu_split": splits,
        "agreement": {"items": report["agreement"]["items"], "annotations": report["agreement"]["annotations"],
                      "seconds": round(agreement_s, 2), "load_average_before": round(load_before, 2), "figures": report["agreement"], "bias": report["bias"]},
        "targets": {"export_s": 20, "export_peak_rss_mb": 500, "agreement_100k_items_s": 10},
        "label_studio_1_23_same_machine_rows_per_s": 770,
    })


if __name__ == "__main__":
    main()
