"""A run on a project trains on a frozen snapshot: made when the run starts, reused while nothing changed."""
from __future__ import annotations

import json

import pytest

from annotation.services import annotation_edit
from training import jobs, services
from training.models import TrainingRun

from tests.helpers import annotated_project

pytestmark = pytest.mark.django_db


def run_on(project, method="dpo"):
    return TrainingRun.objects.create(method=method, base_model=services.base_model_get(name="tiny"), project=project)


def test_a_project_run_freezes_a_snapshot_and_the_next_run_reuses_it():
    project, rater = annotated_project(6)
    first = jobs.snapshot_for_run(run_on(project))
    assert first.kind == "trl" and first.row_count == 6 and first.format == "jsonl"
    rows = [json.loads(line) for line in services.data_path(first.path).read_text().splitlines()]
    assert all(r["chosen"][-1]["content"].startswith("Thank") for r in rows)

    second_run = run_on(project)
    assert jobs.snapshot_for_run(second_run) == first
    assert TrainingRun.objects.get(pk=second_run.pk).snapshot == first

    annotation = project.items.first().annotations.get()
    annotation_edit(rater=rater, annotation_id=annotation.pk, payload={"choice": "A", "strength": "slight", "criteria": {}})
    third = jobs.snapshot_for_run(run_on(project))
    assert third != first  # an edited annotation means a new snapshot

    kto = jobs.snapshot_for_run(run_on(project, "kto"))
    assert kto.kind == "kto" and kto != third


def test_a_project_without_annotations_fails_the_run_with_the_reason():
    from tests.factories import make_project

    project = make_project("pairwise")
    run = run_on(project)
    assert jobs.run_execute(run_id=run.pk, worker="here") == "failed"
    run.refresh_from_db()
    assert run.status == "failed" and "nothing to freeze" in run.error
    assert jobs.run_execute(run_id=run.pk, worker="here") is None  # a second delivery does nothing
