"""Dataset snapshots: an export frozen to a file under the data directory, with its sha256.

Training runs read snapshots, never live tables, so a run can be repeated on exactly the same rows.
A snapshot is never changed after it is written: its file is read-only and nothing here updates it.

    snapshot = snapshot_create(project=project, kind="trl", style="conversational", format="jsonl",
                               options={"aggregate": "majority"}, created_by=user)
    rows = snapshot_path(snapshot)   # JSONL: one TRL row per line
"""
from __future__ import annotations

import shutil
import stat
import uuid
from pathlib import Path

from django.conf import settings
from django.utils import timezone

from annotation.errors import Invalid
from annotation.exports import EXTENSIONS, export_to_file, parse_format, parse_options
from annotation.exports.writers import file_sha256
from annotation.models import Project

from .models import DatasetSnapshot

SNAPSHOT_DIR = "snapshots"


def snapshot_path(snapshot: DatasetSnapshot) -> Path:
    """The snapshot's file (or, for format 'hf', its `datasets` directory)."""
    return Path(settings.PS_DATA_DIR) / snapshot.path


def _read_only(path: Path) -> None:
    mode = stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH
    if path.is_dir():
        for f in path.rglob("*"):
            if f.is_file():
                f.chmod(mode)
    else:
        path.chmod(mode)


def snapshot_create(*, project: Project, kind: str, style: str = "standard", format: str = "jsonl",
                    options: dict | None = None, created_by=None, name: str = "") -> DatasetSnapshot:
    """Freeze the project's export as it stands now. Raises ``Invalid`` naming a bad option,
    or when no annotation matches (an empty dataset would only fail later, in training)."""
    if options is not None and not isinstance(options, dict):
        raise Invalid("must be an object of export options", field="options")
    options = dict(options or {})
    for key in ("kind", "style", "format"):
        options.pop(key, None)
    export_options = parse_options({**options, "kind": kind, "style": style}, project=project)
    fmt = parse_format(format, options=export_options)
    name = (name or "").strip()
    if len(name) > 200:
        raise Invalid("must be at most 200 characters", field="name")

    stamp = timezone.now().strftime("%Y%m%dT%H%M%S")
    filename = f"{stamp}-{uuid.uuid4().hex[:8]}-{kind}-{export_options.style}"
    if fmt != "hf":
        filename += f".{EXTENSIONS[fmt]}"
    relative = Path(SNAPSHOT_DIR) / project.slug / filename
    path = Path(settings.PS_DATA_DIR) / relative
    result = export_to_file(project=project, options=export_options, fmt=fmt, path=path)
    try:
        if result.row_count == 0:
            raise Invalid("no annotation matches these options: nothing to freeze", field="options")
        _read_only(path)
        return DatasetSnapshot.objects.create(
            project=project, name=name or f"{project.slug} {kind} {export_options.style} {stamp}",
            path=relative.as_posix(), sha256=result.sha256, size_bytes=result.size_bytes, kind=kind,
            style=export_options.style, format=fmt, options=export_options.as_dict(), row_count=result.row_count,
            counts=result.counts, annotation_high_water=result.annotation_high_water, created_by=created_by,
        )
    except BaseException:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        raise


def snapshot_verify(snapshot: DatasetSnapshot) -> bool:
    """Whether the snapshot's file is still there, byte for byte."""
    path = snapshot_path(snapshot)
    return path.exists() and file_sha256(path) == snapshot.sha256
