"""The export download and the snapshot endpoints, as an admin and as a rater."""
import io
import json

import pyarrow.parquet as pq
import pytest

from tests.helpers import pick
from tests.factories import UserFactory, make_item, make_project

pytestmark = pytest.mark.django_db


@pytest.fixture
def project(raters, join):
    project = make_project("pairwise")
    for i in range(3):
        make_item(project, [f"good {i}", f"bad {i}"], models=["m-good", "m-bad"])
    (rater,) = join(project, raters[:1])
    for i in range(3):
        pick(rater, project, winner_text=f"good {i}")
    return project


def body(response):
    return b"".join(response.streaming_content)


def test_admin_downloads_a_streamed_jsonl_export(api, admin, project):
    api.force_authenticate(admin)
    response = api.get(f"/api/v1/projects/{project.pk}/export/?kind=trl&format=jsonl&style=conversational")
    assert response.status_code == 200 and response.streaming
    assert response["Content-Type"] == "application/x-ndjson"
    assert f'filename="{project.slug}-trl-conversational.jsonl"' in response["Content-Disposition"]
    rows = [json.loads(line) for line in body(response).splitlines()]
    assert len(rows) == 3
    assert all(r["chosen"][0]["content"].startswith("good") for r in rows)


def test_parquet_and_csv_downloads(api, admin, project):
    api.force_authenticate(admin)
    parquet = api.get(f"/api/v1/projects/{project.pk}/export/?kind=kto&format=parquet")
    table = pq.read_table(io.BytesIO(body(parquet)))
    assert table.num_rows == 6 and sorted(table.column("label").to_pylist()) == [False] * 3 + [True] * 3
    csv_text = body(api.get(f"/api/v1/projects/{project.pk}/export/?kind=raw&format=csv")).decode()
    assert csv_text.splitlines()[0].startswith("annotation_id,item_id,prompt_id")
    assert len(csv_text.splitlines()) == 4


@pytest.mark.parametrize("query, field", [
    ("kind=dpo", "kind"), ("format=xlsx", "format"), ("format=hf", "format"), ("min_agreement=2", "min_agreement"),
    ("since=last-week", "since"), ("kind=trl&style=conversational&format=csv", "format"),
])
def test_bad_export_options_get_a_400_naming_the_field(api, admin, project, query, field):
    api.force_authenticate(admin)
    response = api.get(f"/api/v1/projects/{project.pk}/export/?{query}")
    assert response.status_code == 400
    assert field in response.json()["errors"]


def test_raters_and_strangers_cannot_export(api, project, raters):
    api.force_authenticate(raters[0])  # a member of the project
    assert api.get(f"/api/v1/projects/{project.pk}/export/").status_code == 403
    api.force_authenticate(UserFactory())
    assert api.get(f"/api/v1/projects/{project.pk}/export/").status_code == 403
    api.force_authenticate(None)
    assert api.get(f"/api/v1/projects/{project.pk}/export/").status_code in (401, 403)


def test_admin_creates_lists_reads_and_downloads_snapshots(api, admin, project, settings, tmp_path):
    settings.PS_DATA_DIR = tmp_path
    api.force_authenticate(admin)
    response = api.post("/api/v1/snapshots/", {"project": project.pk, "kind": "trl", "style": "standard",
                                               "format": "jsonl", "options": {"aggregate": "majority"}}, format="json")
    assert response.status_code == 201, response.json()
    snap = response.json()
    assert snap["row_count"] == 3 and snap["options"]["aggregate"] == "majority" and len(snap["sha256"]) == 64
    assert snap["created_by"] == admin.username
    listed = api.get(f"/api/v1/snapshots/?project={project.pk}").json()
    assert [s["id"] for s in listed] == [snap["id"]]
    assert api.get(f"/api/v1/snapshots/{snap['id']}/").json()["sha256"] == snap["sha256"]
    download = api.get(f"/api/v1/snapshots/{snap['id']}/download/")
    assert download.status_code == 200 and download["X-Sha256"] == snap["sha256"]
    assert len(b"".join(download.streaming_content).splitlines()) == 3


def test_snapshot_errors_are_clear(api, admin, project, raters, settings, tmp_path):
    settings.PS_DATA_DIR = tmp_path
    api.force_authenticate(admin)
    bad = api.post("/api/v1/snapshots/", {"project": project.pk, "kind": "trl", "options": {"gold": "maybe"}},
                   format="json")
    assert bad.status_code == 400 and "gold" in bad.json()["errors"]
    empty = api.post("/api/v1/snapshots/", {"project": project.pk, "kind": "trl", "options": {"gold": "only"}},
                     format="json")
    assert empty.status_code == 400 and "options" in empty.json()["errors"]
    assert list(tmp_path.rglob("*.jsonl")) == []  # nothing half-written is left behind
    assert api.get("/api/v1/snapshots/999999/").status_code == 404
    api.force_authenticate(raters[0])
    assert api.get("/api/v1/snapshots/").status_code == 403
    assert api.post("/api/v1/snapshots/", {"project": project.pk, "kind": "trl"}, format="json").status_code == 403
