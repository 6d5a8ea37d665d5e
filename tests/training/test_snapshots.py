"""Snapshots freeze an export: their rows do not move when the project does."""
import hashlib
import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from tests.helpers import pick
from tests.factories import make_item, make_project
from training.snapshots import snapshot_create, snapshot_path, snapshot_verify

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def data_dir(settings, tmp_path):
    settings.PS_DATA_DIR = tmp_path / "data"
    return settings.PS_DATA_DIR


def test_snapshot_is_frozen_with_its_hash_counts_and_high_water_mark(raters, join, admin):
    project = make_project("pairwise")
    for i in range(4):
        make_item(project, [f"good {i}", f"bad {i}"])
    (rater,) = join(project, raters[:1])
    for i in range(3):
        pick(rater, project, winner_text=f"good {i}")
    pick(rater, project, choice="both_bad")

    snap = snapshot_create(project=project, kind="kto", style="conversational", format="jsonl", options={},
                           created_by=admin)
    path = snapshot_path(snap)
    assert path.is_file() and path.stat().st_mode & 0o222 == 0  # read-only
    assert hashlib.sha256(path.read_bytes()).hexdigest() == snap.sha256 and snap.size_bytes == path.stat().st_size
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert snap.row_count == len(rows) == 8
    assert snap.counts["desirable"] == 3 and snap.counts["undesirable"] == 5
    assert snap.annotation_high_water == max(r["annotation_id"] for r in rows)
    assert rows[0]["prompt"] == [{"role": "user", "content": "Say something."}]

    make_item(project, ["later good", "later bad"])
    pick(rater, project, winner_text="later good")  # annotated after the snapshot
    assert [json.loads(line) for line in path.read_text().splitlines()] == rows
    assert snapshot_verify(snap)
    second = snapshot_create(project=project, kind="kto", style="conversational", format="jsonl", options={})
    assert second.row_count == 10 and second.annotation_high_water > snap.annotation_high_water
    assert snapshot_path(second) != path


def test_snapshot_formats_parquet_and_datasets_directory(raters, join):
    datasets = pytest.importorskip("datasets")
    project = make_project("pairwise")
    make_item(project, ["a", "b"])
    (rater,) = join(project, raters[:1])
    pick(rater, project, winner_text="a")
    parquet = snapshot_create(project=project, kind="trl", format="parquet", options={})
    assert snapshot_path(parquet).suffix == ".parquet" and snapshot_verify(parquet)
    hf = snapshot_create(project=project, kind="trl", style="conversational", format="hf", options={})
    loaded = datasets.load_from_disk(str(snapshot_path(hf)))
    assert loaded[0]["chosen"] == [{"role": "assistant", "content": "a"}]
    assert snapshot_verify(hf)


def test_a_changed_file_fails_verification(raters, join):
    project = make_project("pairwise")
    make_item(project, ["a", "b"])
    (rater,) = join(project, raters[:1])
    pick(rater, project, winner_text="a")
    snap = snapshot_create(project=project, kind="trl", options={})
    path = snapshot_path(snap)
    path.chmod(0o644)
    path.write_text(path.read_text().replace('"a"', '"z"'))
    assert not snapshot_verify(snap)


def test_commands_export_and_snapshot(raters, join, tmp_path, capsys):
    project = make_project("pairwise")
    make_item(project, ["a", "b"])
    (rater,) = join(project, raters[:1])
    pick(rater, project, winner_text="a")
    out = tmp_path / "prefs.jsonl"
    call_command("export_preferences", "--project", project.slug, "--kind", "trl", "--format", "jsonl",
                 "--style", "conversational", "--out", str(out))
    assert "Wrote 1 rows" in capsys.readouterr().out
    assert json.loads(out.read_text())["chosen"] == [{"role": "assistant", "content": "a"}]

    call_command("create_snapshot", "--project", project.slug, "--kind", "kto", "--option", "gold=include")
    assert "Snapshot" in capsys.readouterr().out

    with pytest.raises(CommandError, match="--min-agreement"):
        call_command("export_preferences", "--project", project.slug, "--out", str(out), "--min-agreement", "lots")
    with pytest.raises(CommandError, match="No project"):
        call_command("export_preferences", "--project", "nope", "--out", str(out))
    with pytest.raises(CommandError, match="HF_TOKEN"):
        call_command("export_preferences", "--project", project.slug, "--out", str(tmp_path / "x.jsonl"),
                     "--push-to-hub", "me/prefs")
    with pytest.raises(CommandError, match="offline"):
        call_command("export_preferences", "--project", project.slug, "--out", str(tmp_path / "y.jsonl"),
                     "--push-to-hub", "me/prefs", "--hub-token", "hf_test")
    assert (tmp_path / "y.jsonl").exists()  # the file is kept when the push fails
