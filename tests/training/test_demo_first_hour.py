"""The demo's first minutes (issue 17): ./dev demo refuses a taken port before doing anything; seed_demo gives every
fresh demo the same data (the queue's shuffles are seeded); the loop can run on the worker while the app answers."""
from __future__ import annotations

import io
import os
import socket
import subprocess
from pathlib import Path

import pytest
from django.core.management import call_command

from annotation.models import Annotation, Response
from training.models import Round, TrainingRun

ROOT = Path(__file__).resolve().parents[2]


def test_a_taken_port_is_refused_before_anything_else(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "CELERY_BROKER_URL")}
        done = subprocess.run(["./dev", "demo"], cwd=ROOT, capture_output=True, text=True, timeout=60,
                              env={**env, "PORT": str(port), "PS_VAR_DIR": str(tmp_path / "var"),
                                   "VENV": str(tmp_path / "no-venv")})
    assert done.returncode == 1
    assert f"Port {port} is already in use by another program" in done.stderr
    assert f"PORT={port + 1} ./dev demo" in done.stderr
    # nothing was installed, migrated or seeded first
    assert not (tmp_path / "no-venv").exists() and not (tmp_path / "var").exists() and done.stdout == ""


def test_the_readme_documents_port():
    readme = (ROOT / "README.md").read_text()
    assert "PORT=8001 ./dev demo" in readme and "| `PORT` | `8000` |" in readme


def demo_annotations() -> list[tuple]:
    """What the simulated raters answered, by content (ids differ between databases)."""
    rows = Annotation.objects.filter(source=Annotation.Source.HUMAN).select_related("item__prompt", "rater")
    out = []
    for a in rows:
        shown = [Response.objects.get(pk=rid).text for rid in a.display_order]
        raw = dict(a.raw_payload or {})
        if "order" in raw:  # a ranking names response ids: put the texts in their place
            raw["order"] = [[shown[a.display_order.index(rid)] for rid in group] for group in raw["order"]]
        out.append((a.item.project.slug, a.item.prompt.external_id, a.rater.username, tuple(shown),
                    str(sorted(raw.items()))))
    return sorted(out)


@pytest.mark.django_db(transaction=True)
def test_two_fresh_demos_get_the_same_annotations():
    call_command("seed_demo", "--no-loop", stdout=io.StringIO())
    first = demo_annotations()
    call_command("flush", interactive=False, verbosity=0)
    call_command("seed_demo", "--no-loop", stdout=io.StringIO())
    assert demo_annotations() == first and len(first) > 300


@pytest.mark.slow
@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_the_loop_runs_on_the_worker_and_a_rerun_adds_nothing(worker):
    call_command("seed_demo", "--no-loop", stdout=io.StringIO())
    out = io.StringIO()
    call_command("seed_demo", "--loop-only", "--loop-on-worker", stdout=out)
    run = TrainingRun.objects.get(method="dpo", project__slug="demo-loop")
    assert run.status == "succeeded" and run.worker != "seed_demo", out.getvalue()  # the worker trained it
    assert run.base_model.name == "small"
    # small's own answers (the planted preference), the checkpoint's round and its human evaluation
    assert Round.objects.filter(status=Round.Status.READY).count() == 3
    assert not TrainingRun.objects.exclude(base_model__name="small").exists()
    assert "human win-rate" in out.getvalue() and "against the small base" in out.getvalue()
    counts = (Annotation.objects.count(), TrainingRun.objects.count(), Round.objects.count())
    again = io.StringIO()
    call_command("seed_demo", stdout=again)
    assert (Annotation.objects.count(), TrainingRun.objects.count(), Round.objects.count()) == counts
    assert "already trained" in again.getvalue()
