"""Dashboard figures: server time of the dashboard pages, and launch-to-engine time with a real worker over Redis.

Run (PostgreSQL + Redis, like the tests):
    pytest bench/dashboard/bench_dashboard.py -o python_files='bench_*.py' -p no:cacheprovider -s
Writes bench/results/dashboard.json and prints the figures.
"""
import json
import os
import random
import statistics
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.cache import cache
from django.test import Client
from django.utils import timezone

from annotation.models import Annotation
from annotation.services import annotation_submit, queue_next
from tests.factories import AdminFactory, UserFactory, add_member, make_item, make_project
from tests.training.conftest import annotated_project, worker  # noqa: F401 - the real worker fixture
from training.models import BaseModel, Checkpoint, TrainingRun

RESULTS = Path(__file__).resolve().parents[1] / "results" / "dashboard.json"
LOADS = int(os.environ.get("BENCH_LOADS", "100"))
ITEMS = int(os.environ.get("BENCH_ITEMS", "600"))
RATERS = 3
LAUNCHES = int(os.environ.get("BENCH_LAUNCHES", "5"))

pytestmark = pytest.mark.django_db(transaction=True)


def stats(samples_ms: list[float]) -> dict:
    ordered = sorted(samples_ms)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {"n": len(ordered), "p50_ms": round(statistics.median(ordered), 1), "p95_ms": round(p95, 1),
            "max_ms": round(ordered[-1], 1)}


def save(section: str, data: dict) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    current = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    current[section] = {**data, "when": time.strftime("%Y-%m-%dT%H:%M:%S"), "loadavg": os.getloadavg(),
                        "cpus": os.cpu_count()}
    RESULTS.write_text(json.dumps(current, indent=2))
    print(f"\n{section}: {json.dumps(current[section], indent=2)}")


def seed_project():
    """A pairwise project of ITEMS items, overlap 3, answered by 3 raters over two days; 20 finished runs."""
    project = make_project("pairwise", overlap=RATERS)
    raters = [add_member(project, UserFactory()) for _ in range(RATERS)]
    rng = random.Random(7)
    for i in range(ITEMS):
        make_item(project, [f"A careful answer {i} " * rng.randint(1, 6), f"Short {i}"])
    for n, rater in enumerate(raters):
        while (assignment := queue_next(rater=rater, project=project)) is not None:
            annotation_submit(rater=rater, item_id=assignment.item_id,
                              payload={"choice": rng.choice("AAB"), "strength": "better"},
                              time_spent_ms=rng.randint(2000, 20000))
    now = timezone.now()
    ids = list(Annotation.objects.filter(item__project=project).order_by("id").values_list("pk", flat=True))
    for i, pk in enumerate(ids):  # spread over the last 48 hours
        Annotation.objects.filter(pk=pk).update(created_at=now - timedelta(minutes=(len(ids) - i) * 2880 / len(ids)))
    tiny = BaseModel.objects.get_or_create(name="tiny", defaults={"source": "tiny"})[0]
    metrics = [{"step": s, "loss": 0.7 - s / 2000, "rewards/accuracies": min(1, s / 300), "rewards/margins": s / 500}
               for s in range(1, 1001)]
    run = None
    for _ in range(20):
        run = TrainingRun.objects.create(method="dpo", base_model=tiny, project=project, status="succeeded",
                                         step=1000, total_steps=1000, metrics=metrics, log_tail="line\n" * 200)
        Checkpoint.objects.create(run=run, step=1000, path="runs/none", kind="lora", metrics=metrics[-1])
    return project, run


def test_dashboard_page_server_time():
    project, run = seed_project()
    admin = AdminFactory()
    client = Client()
    client.force_login(admin)
    pages = {
        "overview": "/manage/dashboard/",
        "quality (report cached)": f"/manage/{project.pk}/quality/",
        "quality (report computed)": f"/manage/{project.pk}/quality/",
        "training (runs + launch form)": "/manage/training/",
        "run page (1,000-step curves)": f"/manage/training/runs/{run.pk}/",
        "run live partial (polled every 1 s)": f"/manage/training/runs/{run.pk}/live/",
        "rounds": f"/manage/{project.pk}/rounds/",
    }
    results = {}
    for name, url in pages.items():
        assert client.get(url).status_code == 200  # warm up (imports, template cache)
        samples = []
        for _ in range(LOADS):
            if name == "quality (report computed)":
                cache.clear()
            start = time.perf_counter()
            response = client.get(url)
            samples.append((time.perf_counter() - start) * 1000)
            assert response.status_code == 200
        results[name] = {**stats(samples), "bytes": len(response.content)}
    results["data"] = {"items": ITEMS, "annotations": Annotation.objects.count(), "runs": TrainingRun.objects.count(),
                       "loads_per_page": LOADS}
    save("page_server_time", results)


def test_launch_to_engine_start(worker):  # noqa: F811 - the fixture imported above
    project, _ = annotated_project(16)
    admin = AdminFactory()
    client = Client()
    client.force_login(admin)
    form = {"method": "dpo", "base_model": "tiny", "dataset": f"project:{project.pk}", "adapter": "lora",
            "max_steps": "100000", "num_epochs": "1", "batch_size": "2", "grad_accum": "1", "lora_r": "16",
            "lora_alpha": "32", "max_length": "64", "eval_fraction": "0", "save_steps": "0", "seed": "42",
            "gpus": "1", "queue": "training"}
    to_claim, to_engine, request_ms = [], [], []
    for _ in range(LAUNCHES):
        start_wall = timezone.now()
        start = time.perf_counter()
        response = client.post("/manage/training/", form)
        request_ms.append((time.perf_counter() - start) * 1000)
        assert response.status_code == 302, response.content[:500]
        run_id = int(response["Location"].rstrip("/").rsplit("/", 1)[1])
        deadline = time.perf_counter() + 60
        while time.perf_counter() < deadline:
            row = TrainingRun.objects.filter(pk=run_id).values("pid", "started_at", "status", "error").get()
            if row["pid"] or row["status"] in ("failed", "succeeded", "cancelled"):
                break
            time.sleep(0.005)
        assert row["pid"], row
        to_engine.append((time.perf_counter() - start) * 1000)
        to_claim.append((row["started_at"] - start_wall).total_seconds() * 1000)
        client.post(f"/manage/training/runs/{run_id}/cancel/")
        deadline = time.perf_counter() + 60
        while TrainingRun.objects.filter(pk=run_id, status="running").exists() and time.perf_counter() < deadline:
            time.sleep(0.05)
    save("launch_to_engine", {
        "launch_request": stats(request_ms),
        "launch_to_claim": stats(to_claim),
        "launch_to_engine_started": stats(to_engine),
        "broker": "redis", "note": "click (POST) to the engine process spawned (pid recorded); the snapshot of the "
                                   "project is reused after the first launch",
    })
