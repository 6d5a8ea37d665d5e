"""Peers' exports load with their judgements and come back out as training rows."""
import io
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from annotation.exports import export_rows, parse_options
from annotation.models import Annotation, Item
from tests.factories import make_project

pytestmark = pytest.mark.django_db

LABEL_STUDIO = [
    {"id": 101, "data": {"prompt": "Explain DNS.", "answer1": "DNS maps names to addresses.", "answer2": "No idea."},
     "annotations": [
         {"id": 1, "completed_by": 7, "lead_time": 12.5, "was_cancelled": False,
          "result": [{"type": "pairwise", "from_name": "comparison", "to_name": "comparison",
                      "value": {"selected": "left"}}]},
         {"id": 2, "completed_by": 8, "was_cancelled": False,
          "result": [{"type": "pairwise", "value": {"selected": "left"}}]},
         {"id": 3, "completed_by": 9, "was_cancelled": True,
          "result": [{"type": "pairwise", "value": {"selected": "right"}}]},
     ]},
    {"id": 102, "data": {"prompt": "Say hi.", "answer1": "...", "answer2": "Hello there!"},
     "annotations": [{"id": 4, "completed_by": 7, "result": [{"type": "pairwise", "value": {"selected": "right"}}]}]},
    {"id": 103, "data": {"prompt": "Unjudged.", "answer1": "a", "answer2": "b"}, "annotations": []},
]


def upload(api, project, payload: bytes, name: str, fmt: str):
    file = io.BytesIO(payload)
    file.name = name
    return api.post(f"/api/v1/projects/{project.pk}/import/peer/", {"file": file, "format": fmt}, format="multipart")


def test_label_studio_pairwise_export_keeps_every_judgement(api, admin):
    project = make_project("pairwise")
    api.force_authenticate(admin)
    response = upload(api, project, json.dumps(LABEL_STUDIO).encode(), "project-1.json", "label_studio")
    assert response.status_code == 201, response.json()
    assert response.json()["items_created"] == 3 and response.json()["annotations_created"] == 3

    rows = list(export_rows(project, parse_options({}, project=project)))
    assert sorted((r["chosen"], r["rejected"]) for r in rows) == [
        ("DNS maps names to addresses.", "No idea."), ("DNS maps names to addresses.", "No idea."),
        ("Hello there!", "...")]
    assert {r["source"] for r in rows} == {"imported"}
    raw = Annotation.objects.get(raw_payload__origin__annotation=1)
    assert raw.raw_payload["origin"]["completed_by"] == 7 and raw.time_spent_ms == 12500

    again = upload(api, project, json.dumps(LABEL_STUDIO).encode(), "project-1.json", "label_studio")
    assert again.status_code == 201 and again.json()["annotations_created"] == 0
    assert Item.objects.filter(project=project).count() == 3


def test_a_bad_label_studio_task_is_named_and_nothing_is_stored(api, admin):
    project = make_project("pairwise")
    api.force_authenticate(admin)
    bad = json.loads(json.dumps(LABEL_STUDIO))
    bad[1]["annotations"][0]["result"][0]["value"]["selected"] = "middle"
    response = upload(api, project, json.dumps(bad).encode(), "ls.json", "label_studio")
    assert response.status_code == 400
    (error,) = response.json()["errors"]
    assert error["line"] == 2 and error["field"] == "[1].annotations[0].result.value.selected"
    assert Item.objects.filter(project=project).count() == 0
    assert upload(api, project, b"{not json", "ls.json", "label_studio").status_code == 400


def test_argilla_style_preference_parquet_loads_with_its_judgements(api, admin):
    project = make_project("pairwise")
    table = pa.Table.from_pylist([
        {"prompt_id": "u1", "prompt": "What is 2+2?",
         "chosen": [{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "4"}],
         "rejected": [{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "5"}],
         "chosen-model": "model-x", "rejected-model": "model-y", "chosen-rating": 5.0, "rejected-rating": 1.0},
        {"prompt_id": "u2", "prompt": "Capital of France?", "chosen": [{"role": "user", "content": "Capital of France?"},
                                                                       {"role": "assistant", "content": "Paris"}],
         "rejected": [{"role": "user", "content": "Capital of France?"}, {"role": "assistant", "content": "Rome"}],
         "chosen-model": "model-x", "rejected-model": "model-y", "chosen-rating": 4.5, "rejected-rating": 2.0},
    ])
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    api.force_authenticate(admin)
    response = upload(api, project, buffer.getvalue(), "ultrafeedback.parquet", "hf_preferences")
    assert response.status_code == 201, response.json()
    assert response.json()["annotations_created"] == 2

    rows = list(export_rows(project, parse_options({"style": "conversational"}, project=project)))
    assert sorted((r["chosen"][0]["content"], r["rejected"][0]["content"], r["chosen_model"]) for r in rows) == [
        ("4", "5", "model-x"), ("Paris", "Rome", "model-x")]
    assert sorted(r["prompt_id"] for r in rows) == ["u1", "u2"]


def test_peer_import_is_for_admins_and_names_a_bad_format(api, admin, raters, join):
    project = make_project("pairwise")
    join(project, raters[:1])
    api.force_authenticate(raters[0])
    assert upload(api, project, b"[]", "x.json", "label_studio").status_code == 403
    api.force_authenticate(admin)
    response = upload(api, project, b"[]", "x.json", "doccano")
    assert response.status_code == 400 and "format" in response.json()
    rating = make_project("rating")
    response = upload(api, rating, json.dumps(LABEL_STUDIO).encode(), "x.json", "label_studio")
    assert response.status_code == 400 and "pairwise project" in response.json()["detail"]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_large_label_studio_import_leaves_the_planner_its_statistics(api, admin):
    """The import's rows and judgements are written in one transaction, where the importer's own ANALYZE is
    skipped; without statistics (autovacuum off, or behind) the planner guesses the tables' contents."""
    from django.db import connection

    project = make_project("pairwise")
    api.force_authenticate(admin)
    tasks = [{"id": i, "data": {"prompt": f"Question {i}", "answer1": f"left {i}", "answer2": f"right {i}"},
              "annotations": [{"id": i, "completed_by": 7, "result": [{"type": "pairwise",
                                                                        "value": {"selected": "left"}}]}]}
             for i in range(1000)]
    response = upload(api, project, json.dumps(tasks).encode(), "big.json", "label_studio")
    assert response.status_code == 201 and response.json()["annotations_created"] == 1000
    with connection.cursor() as cursor:
        cursor.execute("SELECT relname, reltuples FROM pg_class WHERE relname IN ('annotation_item', "
                       "'annotation_annotation')")
        assert dict(cursor.fetchall()) == {"annotation_item": 1000, "annotation_annotation": 1000}
