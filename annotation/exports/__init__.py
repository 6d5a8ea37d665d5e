"""Training-ready exports of a project's annotations: TRL preference, KTO and raw rows, streamed.

    options = parse_options({"kind": "trl", "style": "conversational"}, project=project)
    for chunk in export_stream(project=project, options=options, fmt="jsonl"): ...
    result = export_to_file(project=project, options=options, fmt="parquet", path="out.parquet")
"""
from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from typing import Iterator

from annotation.models import Project

from .options import (AGGREGATES, CONTENT_TYPES, EXTENSIONS, FORMATS, KINDS, STREAM_FORMATS, STYLES, ExportOptions,
                      parse_format, parse_options)
from .rows import export_rows, high_water_mark
from .schema import export_schema
from .writers import HubPushError, encode, push_to_hub, write_file

__all__ = [
    "AGGREGATES", "CONTENT_TYPES", "EXTENSIONS", "FORMATS", "KINDS", "STREAM_FORMATS", "STYLES", "ExportOptions", "ExportResult",
    "HubPushError", "export_rows", "export_stream", "export_to_file", "high_water_mark", "parse_format",
    "parse_options", "push_to_hub",
]


@dataclass
class ExportResult:
    path: str
    size_bytes: int
    sha256: str
    row_count: int
    counts: dict
    annotation_high_water: int


def export_stream(*, project: Project, options: ExportOptions, fmt: str,
                  high_water: int | None = None) -> Iterator[bytes]:
    """The export as bytes, produced while it is read (for a streamed download)."""
    rows = export_rows(project, options, high_water=high_water)
    return encode(rows, fmt, export_schema(options.kind, options.style))


def export_to_file(*, project: Project, options: ExportOptions, fmt: str, path: str | os.PathLike,
                   high_water: int | None = None) -> ExportResult:
    """Write the export to ``path``; annotations up to ``high_water`` (default: all stored now)."""
    if high_water is None:
        high_water = high_water_mark(project)
    stats: Counter = Counter()
    rows = export_rows(project, options, high_water=high_water, stats=stats)
    size, sha256 = write_file(rows, fmt, export_schema(options.kind, options.style), path)
    counts = dict(sorted(stats.items()))
    return ExportResult(str(path), size, sha256, stats["rows"], counts, high_water)
