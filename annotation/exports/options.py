"""Export options: what to export, how to shape it and which annotations to include.

``parse_options`` turns a query string (API) or command-line options into an ``ExportOptions``,
raising ``Invalid`` that names the field at fault.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime, time, timezone as dt_timezone
from typing import Any, Mapping

from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from ..errors import Invalid
from ..project_config import judgement_mode

KINDS = ("trl", "kto", "raw", "sft")
STYLES = ("standard", "conversational")
FORMATS = ("jsonl", "parquet", "csv", "hf")
STREAM_FORMATS = ("jsonl", "parquet", "csv")  # what an HTTP download can carry (hf is a directory)
AGGREGATES = ("none", "majority", "mean", "bradley_terry")
TIES = ("drop", "flag")
GOLD = ("include", "exclude", "only")
EDITS = ("exclude", "include", "only")  # trl: rows of a rater's rewrite preferred to the text they rewrote
SOURCES = ("human", "imported", "judge", "cai")

EXTENSIONS = {"jsonl": "jsonl", "parquet": "parquet", "csv": "csv", "hf": "hf"}
CONTENT_TYPES = {
    "jsonl": "application/x-ndjson",
    "parquet": "application/vnd.apache.parquet",
    "csv": "text/csv; charset=utf-8",
}


@dataclass(frozen=True)
class ExportOptions:
    kind: str = "trl"
    style: str = "standard"
    aggregate: str = "none"  # none: one row per annotation; majority | mean | bradley_terry: one per item
    ties: str = "drop"  # drop or flag (kept with tie=true and margin 0) ties and tied ranking groups
    since: datetime | None = None  # annotations created at or after
    until: datetime | None = None  # annotations created before
    raters: tuple[str, ...] = ()  # usernames; empty: everyone
    sources: tuple[str, ...] = ()  # human | imported | judge; empty: all
    criterion: str = ""  # use this criterion's judgement instead of the overall one
    gold: str = "include"  # include | exclude | only gold items
    min_agreement: float | None = None  # keep items whose majority share is at least this (2+ annotations)
    kto_threshold: int | None = None  # ratings at or above are desirable; default: the project's
    edits: str = "exclude"  # trl: exclude | include | only the rows "edited text preferred to its draft"
    extra: dict = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready, for snapshot records."""
        data = asdict(self)
        data.pop("extra")
        for key in ("since", "until"):
            data[key] = data[key].isoformat() if data[key] else None
        data["raters"], data["sources"] = list(self.raters), list(self.sources)
        return data


def _fail(name: str, message: str):
    raise Invalid(message, field=name)


def _choice(data: Mapping, name: str, choices: tuple[str, ...], default: str) -> str:
    value = data.get(name)
    if value in (None, ""):
        return default
    if value not in choices:
        _fail(name, f"must be one of {', '.join(choices)}, got {value!r}")
    return value


def _when(data: Mapping, name: str, *, end: bool = False) -> datetime | None:
    value = data.get(name)
    if value in (None, ""):
        return None
    if isinstance(value, datetime):
        parsed = value
    else:
        value = str(value)
        try:
            parsed = parse_datetime(value)
            if parsed is None:
                day = parse_date(value)
                if day is not None:
                    parsed = datetime.combine(day, time.min)
                    if end:  # "until 2025-01-31" includes that day
                        parsed = parsed.replace(hour=23, minute=59, second=59, microsecond=999999)
        except ValueError:
            parsed = None
        if parsed is None:
            _fail(name, f"must be an ISO date or datetime (e.g. 2025-01-31 or 2025-01-31T12:00:00Z), got {value!r}")
    if timezone.is_naive(parsed):
        parsed = timezone.make_aware(parsed, dt_timezone.utc)
    return parsed


def _names(data: Mapping, name: str) -> tuple[str, ...]:
    value = data.get(name)
    if value in (None, ""):
        return ()
    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        _fail(name, "must be a comma-separated list of names")
    return tuple(sorted({v.strip() for v in value if v.strip()}))


def _getlist(data: Mapping, name: str):
    """QueryDicts repeat keys (?rater=a&rater=b); plain dicts hold a list or a comma-separated string."""
    if hasattr(data, "getlist"):
        values = data.getlist(name)
        return ",".join(values) if values else None
    return data.get(name)


def parse_options(data: Mapping, *, project) -> ExportOptions:
    """Validate export options against ``project`` (its mode and criteria)."""
    known = {"kind", "style", "format", "aggregate", "ties", "since", "until", "rater", "raters", "source",
             "sources", "criterion", "gold", "min_agreement", "kto_threshold", "edits", "name"}
    unknown = sorted(set(data) - known)
    if unknown:
        _fail(unknown[0], f"unknown option (known: {', '.join(sorted(known))})")
    kind = _choice(data, "kind", KINDS, "trl")
    style = _choice(data, "style", STYLES, "standard")
    aggregate = _choice(data, "aggregate", AGGREGATES, "none")
    mode = judgement_mode(project.mode)
    edits = _choice(data, "edits", EDITS, "only" if mode == "demonstration" and kind == "trl" else "exclude")
    if edits != "exclude" and kind != "trl":
        _fail("edits", "edited-over-original pairs are rows of the trl export")
    if mode == "demonstration":
        if kind == "kto":
            _fail("kind", "a demonstration project has written answers, not judgements: export sft, trl or raw")
        if kind == "trl" and edits != "only":
            _fail("edits", "a demonstration project's only pairs are its edits: use edits=only")
    if kind == "sft" or (kind == "trl" and edits == "only"):
        if aggregate != "none":
            _fail("aggregate", "written answers are one row each; aggregate applies to judgements")
        for name in ("criterion", "min_agreement"):
            if data.get(name) not in (None, ""):
                _fail(name, "applies to judgements, not to written answers")
    if aggregate == "mean" and mode != "rating":
        _fail("aggregate", "'mean' aggregates ratings; use majority or bradley_terry for comparisons")
    if aggregate in ("majority", "bradley_terry") and mode == "rating" and kind != "raw":
        _fail("aggregate", "rating projects aggregate with 'mean'")
    if aggregate != "none" and kind == "raw":
        _fail("aggregate", "raw exports are one row per annotation; aggregate applies to trl and kto")
    since, until = _when(data, "since"), _when(data, "until", end=True)
    if since and until and since > until:
        _fail("until", "must be after 'since'")
    raters = _names({"raters": _getlist(data, "raters") or _getlist(data, "rater")}, "raters")
    sources = _names({"sources": _getlist(data, "sources") or _getlist(data, "source")}, "sources")
    for source in sources:
        if source not in SOURCES:
            _fail("sources", f"'{source}' is not a source (known: {', '.join(SOURCES)})")
    criterion = (data.get("criterion") or "").strip()
    if criterion:
        if mode == "ranking":
            _fail("criterion", "ranking projects have no criteria")
        if criterion not in project.config.get("criteria", []):
            known_criteria = ", ".join(project.config.get("criteria", [])) or "none"
            _fail("criterion", f"'{criterion}' is not a criterion of this project (criteria: {known_criteria})")
    min_agreement = data.get("min_agreement")
    if min_agreement not in (None, ""):
        try:
            min_agreement = float(min_agreement)
        except (TypeError, ValueError):
            _fail("min_agreement", f"must be a number from 0 to 1, got {min_agreement!r}")
        if not 0 <= min_agreement <= 1:
            _fail("min_agreement", f"must be a number from 0 to 1, got {min_agreement!r}")
    else:
        min_agreement = None
    kto_threshold = data.get("kto_threshold")
    if kto_threshold not in (None, ""):
        if mode != "rating":
            _fail("kto_threshold", "applies to rating projects only")
        scale = project.config.get("scale", 7)
        try:
            kto_threshold = int(kto_threshold)
        except (TypeError, ValueError):
            _fail("kto_threshold", f"must be an integer from 1 to {scale}")
        if not 1 <= kto_threshold <= scale:
            _fail("kto_threshold", f"must be an integer from 1 to {scale}")
    else:
        kto_threshold = project.config.get("kto_threshold") if mode == "rating" else None
    return ExportOptions(
        kind=kind, style=style, aggregate=aggregate, ties=_choice(data, "ties", TIES, "drop"),
        since=since, until=until, raters=raters, sources=sources, criterion=criterion,
        gold=_choice(data, "gold", GOLD, "include"), min_agreement=min_agreement, kto_threshold=kto_threshold,
        edits=edits,
    )


def parse_format(value, *, allowed: tuple[str, ...] = FORMATS, options: ExportOptions | None = None) -> str:
    """The file format; with the parsed ``options``, also whether that format can carry them."""
    value = value or "jsonl"
    if value not in allowed:
        _fail("format", f"must be one of {', '.join(allowed)}, got {value!r}")
    if value == "csv" and options is not None and options.style == "conversational" and options.kind != "raw":
        # A CSV cell holds the message list as JSON text, and TRL reads it back as a plain-text prompt.
        _fail("format", "conversational rows cannot be written as CSV (a training library reads the message "
                        "lists back as plain text); use jsonl or parquet, or style 'standard'")
    return value
