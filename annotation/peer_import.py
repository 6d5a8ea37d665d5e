"""Import other tools' exports with their judgements, so a team can move here with its history.

- Label Studio pairwise export (JSON): tasks ``{"id", "data": {"prompt", "answer1", "answer2"}, "annotations":
  [{"result": [{"type": "pairwise", "value": {"selected": "left" | "right"}}], "completed_by", "lead_time"}]}``
  (the "Human preference collection for RLHF" template). Each task becomes a pairwise item (left response
  first), and each of its annotations an imported judgement that keeps who made it in Label Studio.
- Argilla / Hugging Face preference datasets (Parquet, JSONL): ``prompt`` / ``chosen`` / ``rejected`` as strings
  or message lists, with the usual extra columns (``chosen-model``, ``chosen_rating``, ``prompt_id``, ...).

Both go through the regular importer (one transaction: all rows or none, errors with their row and field).
"""
from __future__ import annotations

import json
import tempfile
from typing import IO

from django.db import transaction

from . import boundary
from .bulk import bulk_insert
from .errors import ImportFailed, Invalid, RowError
from .importer import ImportResult, analyze_if_large, import_items
from .models import Annotation, Item, ItemResponse, Project

PEER_FORMATS = ("label_studio", "hf_preferences")
LS_PROMPT_KEYS = ("prompt", "question", "instruction", "text")
LS_RESPONSE_KEYS = (("answer1", "answer2"), ("response1", "response2"), ("text1", "text2"), ("left", "right"))
MAX_ERRORS = 50


def _fail_file(message: str):
    raise ImportFailed([RowError(None, "file", message)])


# --- Label Studio ------------------------------------------------------------------------------


def _ls_task(index: int, task) -> tuple[dict, list[dict]]:
    """(importer row, judgements) for one Label Studio task; raises RowError-like ValueError."""
    where = f"[{index}]"
    if not isinstance(task, dict) or not isinstance(task.get("data"), dict):
        raise _RowProblem(f"{where}.data", "each task needs a 'data' object")
    data = task["data"]
    prompt_key = next((k for k in LS_PROMPT_KEYS if isinstance(data.get(k), str) and data[k].strip()), None)
    if prompt_key is None:
        raise _RowProblem(f"{where}.data.prompt", f"no prompt text (looked for {', '.join(LS_PROMPT_KEYS)})")
    pair = next(((a, b) for a, b in LS_RESPONSE_KEYS if isinstance(data.get(a), str) and isinstance(data.get(b), str)),
                None)
    if pair is None:
        names = ", ".join(f"{a}/{b}" for a, b in LS_RESPONSE_KEYS)
        raise _RowProblem(f"{where}.data", f"no pair of responses (looked for {names})")
    task_id = task.get("id", index)
    row = {
        "id": f"ls-{task_id}",
        "prompt": data[prompt_key],
        "responses": [{"text": data[pair[0]], "model": str(data.get(f"{pair[0]}_model") or data.get("model1") or "")},
                      {"text": data[pair[1]], "model": str(data.get(f"{pair[1]}_model") or data.get("model2") or "")}],
        "metadata": {"label_studio_task": task_id},
    }
    judgements = []
    annotations = task.get("annotations") or []
    if not isinstance(annotations, list):
        raise _RowProblem(f"{where}.annotations", "must be a list")
    for j, ann in enumerate(annotations):
        if not isinstance(ann, dict) or ann.get("was_cancelled"):
            continue
        results = [r for r in ann.get("result") or [] if isinstance(r, dict) and r.get("type") == "pairwise"]
        if not results:
            continue  # an annotation of some other control (a comment, a rating) carries no preference
        selected = (results[0].get("value") or {}).get("selected")
        if selected not in ("left", "right"):
            raise _RowProblem(f"{where}.annotations[{j}].result.value.selected",
                              f"must be 'left' or 'right', got {selected!r}")
        lead = ann.get("lead_time")
        judgements.append({
            "winner": 0 if selected == "left" else 1,
            "time_spent_ms": int(lead * 1000) if isinstance(lead, (int, float)) and 0 <= lead < 86_400 else None,
            "origin": {"tool": "label_studio", "task": task_id, "annotation": ann.get("id"),
                       "completed_by": ann.get("completed_by"), "created_at": ann.get("created_at")},
        })
    return row, judgements


class _RowProblem(Exception):
    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field, self.message = field, message


def import_label_studio(*, project: Project, stream: IO[bytes], round_name: str = "") -> ImportResult:
    if project.mode != "pairwise":
        _fail_file("a Label Studio pairwise export needs a pairwise project")
    try:
        tasks = boundary.loads(stream.read())
    except boundary.JSONError as exc:
        _fail_file(f"not a Label Studio JSON export: {exc}")
    except Invalid as exc:  # text that may not enter, with where it is (e.g. "[3].data.prompt")
        raise ImportFailed([RowError(None, exc.field or "file", exc.message)]) from None
    if not isinstance(tasks, list):
        _fail_file("a Label Studio JSON export is a list of tasks")
    rows, judgements, errors = [], {}, []
    for index, task in enumerate(tasks):
        try:
            row, task_judgements = _ls_task(index, task)
        except _RowProblem as exc:
            errors.append(RowError(index + 1, exc.field, exc.message))
            if len(errors) >= MAX_ERRORS:
                break
            continue
        rows.append(row)
        judgements[row["id"]] = task_judgements
    if errors:
        raise ImportFailed(errors)
    with transaction.atomic():
        result = _import_rows(project, rows, round_name)
        result.annotations_created += _add_judgements(project, judgements)
    analyze_if_large(result)  # the import's own ANALYZE was inside the transaction: skipped
    return result


def _import_rows(project: Project, rows: list[dict], round_name: str) -> ImportResult:
    with tempfile.SpooledTemporaryFile(max_size=64 << 20) as spool:
        for row in rows:
            spool.write(json.dumps(row, ensure_ascii=False).encode() + b"\n")
        spool.seek(0)
        return import_items(project=project, stream=spool, filename="rows.jsonl", round_name=round_name)


def _add_judgements(project: Project, judgements: dict[str, list[dict]]) -> int:
    """Imported annotations for items that have none yet (so a re-import adds nothing)."""
    items = {}
    for item_id, external_id in Item.objects.filter(project=project, prompt__external_id__in=list(judgements)) \
            .values_list("id", "prompt__external_id"):
        items[item_id] = external_id
    done = set(Annotation.objects.filter(item_id__in=list(items), source=Annotation.Source.IMPORTED)
               .values_list("item_id", flat=True))
    order: dict[int, list[int]] = {}
    for item_id, rid in ItemResponse.objects.filter(item_id__in=list(items)).order_by("item_id", "position") \
            .values_list("item_id", "response_id"):
        order.setdefault(item_id, []).append(rid)
    rows = []
    for item_id, external_id in items.items():
        if item_id in done:
            continue
        shown = order[item_id]
        for j in judgements[external_id]:
            chosen, rejected = shown[j["winner"]], shown[1 - j["winner"]]
            payload = {"outcome": "win", "chosen": chosen, "rejected": rejected, "strength": None, "criteria": {},
                       "comment": ""}
            raw = {"choice": "AB"[j["winner"]], "origin": j["origin"]}
            rows.append((item_id, None, None, Annotation.Source.IMPORTED, payload, raw, shown, j["time_spent_ms"],
                         None, "", None, None))
    bulk_insert(Annotation, ["item_id", "rater_id", "assignment_id", "source", "payload", "raw_payload",
                             "display_order", "time_spent_ms", "gold_correct", "idempotency_key", "created_at",
                             "updated_at"], rows, returning=False)
    return len(rows)


# --- Argilla / Hugging Face preference datasets ------------------------------------------------------


ALIASES = {
    "chosen_model": ("chosen_model", "chosen-model", "model_chosen"),
    "rejected_model": ("rejected_model", "rejected-model", "model_rejected"),
    "chosen_rating": ("chosen_rating", "chosen-rating", "score_chosen"),
    "rejected_rating": ("rejected_rating", "rejected-rating", "score_rejected"),
    "id": ("id", "prompt_id", "example_id"),
}


def _pick(row: dict, name: str):
    return next((row[k] for k in ALIASES[name] if row.get(k) not in (None, "")), None)


def normalise_preference_row(row: dict) -> dict:
    """An Argilla / HF preference row in the importer's {id, prompt, chosen, rejected, ...} shape."""
    if not isinstance(row, dict):
        return row
    out = {"chosen": row.get("chosen"), "rejected": row.get("rejected")}
    prompt = row.get("prompt")
    chosen = row.get("chosen")
    if prompt in (None, "") and isinstance(chosen, list) and len(chosen) > 1:
        prompt = chosen[:-1]  # a whole conversation in "chosen": the turns before the answer are the prompt
    out["prompt"] = prompt
    for name in ("chosen_model", "rejected_model", "id"):
        value = _pick(row, name)
        if value is not None:
            out[name] = value if name == "id" else str(value)
    metadata = {name: _pick(row, name) for name in ("chosen_rating", "rejected_rating") if _pick(row, name) is not None}
    if metadata:
        out["metadata"] = metadata
    return out


def import_hf_preferences(*, project: Project, stream: IO[bytes], filename: str, round_name: str = "") -> ImportResult:
    """Rows of prompt/chosen/rejected (Parquet or JSONL), each an item with its imported judgement."""
    from .importer import READERS, RowInvalid, format_from_name

    fmt = format_from_name(filename)
    if project.mode == "rating":
        _fail_file("preference rows (chosen / rejected) need a pairwise or ranking project")
    errors = []
    with tempfile.SpooledTemporaryFile(max_size=64 << 20) as spool:
        for line, row in READERS[fmt](stream):
            if isinstance(row, RowInvalid):
                errors.append(RowError(line, row.field, row.message))
                continue
            value = normalise_preference_row(row) if isinstance(row, dict) else row
            try:
                # ASCII escapes: a lone surrogate reaches the importer, which names its field
                spool.write(json.dumps(value, default=str).encode() + b"\n")
            except (RecursionError, ValueError) as exc:
                errors.append(RowError(line, None, f"not storable as JSON: {type(exc).__name__}"))
        if errors:
            raise ImportFailed(errors[:MAX_ERRORS])
        spool.seek(0)
        return import_items(project=project, stream=spool, filename="rows.jsonl", round_name=round_name)


def import_peer(*, project: Project, stream: IO[bytes], filename: str, peer_format: str,
                round_name: str = "") -> ImportResult:
    if peer_format == "label_studio":
        return import_label_studio(project=project, stream=stream, round_name=round_name)
    if peer_format == "hf_preferences":
        return import_hf_preferences(project=project, stream=stream, filename=filename, round_name=round_name)
    _fail_file(f"unknown format '{peer_format}' (known: {', '.join(PEER_FORMATS)})")
