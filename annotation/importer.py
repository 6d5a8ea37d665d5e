"""Import prompts and responses from JSONL, CSV or Parquet, all rows or none.

Row shapes:
  {"id"?, "prompt" | "messages", "responses": [str | {"text", "model"?, "params"?}], "metadata"?}
  {"id"?, "prompt" | "messages", "chosen", "rejected", "chosen_model"?, "rejected_model"?, "metadata"?}

The file is read as a stream and written in batches inside one transaction; the first bad row
rolls everything back, and up to ``MAX_ERRORS`` problems are reported with their line and field.
Prompts are keyed by ``id`` (or, without one, a hash of the row), so a re-import creates nothing.
"""
from __future__ import annotations

import csv
import hashlib
import io
import itertools
import json
from dataclasses import dataclass, field
from typing import IO, Callable, Iterator

from django.conf import settings
from django.db import connection, transaction

from .errors import ImportFailed, RowError
from .models import Annotation, Item, ItemResponse, Project, Prompt, Response
from .bulk import bulk_insert

MAX_ERRORS = 50
ROLES = ("system", "user", "assistant")
FORMATS = ("jsonl", "csv", "parquet")


@dataclass
class ParsedResponse:
    text: str
    model: str = ""
    params: dict = field(default_factory=dict)
    checkpoint_id: int | None = None  # a generated response: the checkpoint that wrote it


@dataclass
class ParsedRow:
    line: int
    external_id: str
    messages: list[dict]
    metadata: dict
    responses: list[ParsedResponse]
    preferred: int | None = None  # index into responses of an imported "chosen" judgement
    groups: list[list[int]] | None = None  # items to build (response indexes); None: ``item_groups``


@dataclass
class ImportResult:
    prompts_created: int = 0
    responses_created: int = 0
    items_created: int = 0
    annotations_created: int = 0
    skipped: int = 0

    def as_dict(self) -> dict:
        return {
            "prompts_created": self.prompts_created,
            "responses_created": self.responses_created,
            "items_created": self.items_created,
            "annotations_created": self.annotations_created,
            "skipped": self.skipped,
        }


class RowInvalid(Exception):
    def __init__(self, field_name: str | None, message: str):
        super().__init__(message)
        self.field, self.message = field_name, message


# --- reading the file ----------------------------------------------------------------------


def format_from_name(filename: str) -> str:
    name = filename.lower()
    for ext, fmt in ((".jsonl", "jsonl"), (".ndjson", "jsonl"), (".json", "jsonl"), (".csv", "csv"),
                     (".parquet", "parquet"), (".pq", "parquet")):
        if name.endswith(ext):
            return fmt
    raise ImportFailed([RowError(None, "file", f"unknown file type for '{filename}': use .jsonl, .csv or .parquet")])


def _decode(raw: bytes, line: int) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RowInvalid(None, f"not valid UTF-8 (byte {exc.start + 1} of the line)") from None


def read_jsonl(stream: IO[bytes]) -> Iterator[tuple[int, dict | RowInvalid]]:
    for line_no, raw in enumerate(stream, start=1):
        if not raw.strip():
            continue
        try:
            text = _decode(raw, line_no)
            try:
                row = json.loads(text)
            except json.JSONDecodeError as exc:
                raise RowInvalid(None, f"bad JSON: {exc.msg} at column {exc.colno}") from None
            yield line_no, row
        except RowInvalid as exc:
            yield line_no, exc


JSON_COLUMNS = ("messages", "responses", "metadata", "chosen", "rejected")


def read_csv(stream: IO[bytes]) -> Iterator[tuple[int, dict | RowInvalid]]:
    """CSV with a header. JSON-valued columns (messages, responses, metadata) hold JSON text;
    responses may also come as response_1, response_2, ... with optional model_1, model_2, ..."""
    bad_lines: dict[int, RowInvalid] = {}
    counter = itertools.count(1)

    def lines():
        for raw in stream:
            line_no = next(counter)
            try:
                yield _decode(raw, line_no)
            except RowInvalid as exc:
                bad_lines[line_no] = exc
                yield "\n"

    reader = csv.reader(lines())
    try:
        header = next(reader)
    except StopIteration:
        return
    if 1 in bad_lines:
        yield 1, bad_lines.pop(1)
        return
    header = [h.strip().lstrip("\ufeff") for h in header]
    start = reader.line_num + 1
    for values in reader:
        line_no, start = start, reader.line_num + 1
        bad = [bad_lines.pop(n) for n in range(line_no, reader.line_num + 1) if n in bad_lines]
        if bad:
            yield line_no, bad[0]
            continue
        if not any(v.strip() for v in values):
            continue
        if len(values) != len(header):
            yield line_no, RowInvalid(None, f"has {len(values)} columns, the header has {len(header)}")
            continue
        row: dict = {}
        try:
            for name, value in zip(header, values):
                if value == "":
                    continue
                if name in ("messages", "responses", "metadata") or (
                    name in ("chosen", "rejected") and value.lstrip().startswith("[")
                ):
                    try:
                        value = json.loads(value)
                    except json.JSONDecodeError as exc:
                        raise RowInvalid(name, f"bad JSON: {exc.msg}") from None
                row[name] = value
        except RowInvalid as exc:
            yield line_no, exc
            continue
        numbered = sorted(
            (int(k.split("_", 1)[1]), k) for k in row if k.startswith("response_") and k.split("_", 1)[1].isdigit()
        )
        if numbered and "responses" not in row:
            row["responses"] = [
                {"text": row.pop(k), **({"model": row.pop(f"model_{n}")} if f"model_{n}" in row else {})}
                for n, k in numbered
            ]
        yield line_no, row


def read_parquet(stream: IO[bytes], batch_size: int = 4096) -> Iterator[tuple[int, dict | RowInvalid]]:
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(stream)
    except Exception as exc:  # pyarrow raises several types for a damaged file
        yield 1, RowInvalid(None, f"not a readable Parquet file: {exc}")
        return
    row_no = 0
    for batch in parquet.iter_batches(batch_size=batch_size):
        for row in batch.to_pylist():
            row_no += 1
            yield row_no, row


READERS: dict[str, Callable] = {"jsonl": read_jsonl, "csv": read_csv, "parquet": read_parquet}


# --- checking a row ------------------------------------------------------------------------


def _text(value, field_name: str, *, allow_empty: bool = False) -> str:
    if not isinstance(value, str):
        raise RowInvalid(field_name, f"must be a string, got {type(value).__name__}")
    if not allow_empty and not value.strip():
        raise RowInvalid(field_name, "is empty")
    if len(value) > settings.PS_MAX_TEXT_CHARS:
        raise RowInvalid(field_name, f"is {len(value)} characters; the limit is {settings.PS_MAX_TEXT_CHARS}")
    return value


def _messages(value, field_name: str) -> list[dict]:
    if not isinstance(value, list) or not value:
        raise RowInvalid(field_name, "must be a non-empty list of {role, content} messages")
    out = []
    for i, msg in enumerate(value):
        where = f"{field_name}[{i}]"
        if not isinstance(msg, dict):
            raise RowInvalid(where, "must be an object with role and content")
        if msg.get("role") not in ROLES:
            raise RowInvalid(f"{where}.role", f"must be one of {', '.join(ROLES)}")
        out.append({"role": msg["role"], "content": _text(msg.get("content"), f"{where}.content")})
    return out


def _completion(value, field_name: str) -> str:
    """A chosen/rejected side: a string, or a list of assistant messages (TRL's conversational shape)."""
    if isinstance(value, list):
        msgs = _messages(value, field_name)
        if msgs[-1]["role"] != "assistant":
            raise RowInvalid(field_name, "the last message must be the assistant's")
        return msgs[-1]["content"]
    return _text(value, field_name)


def _response(value, field_name: str) -> ParsedResponse:
    if isinstance(value, str):
        return ParsedResponse(_text(value, field_name))
    if not isinstance(value, dict):
        raise RowInvalid(field_name, "must be a string or an object with text")
    unknown = set(value) - {"text", "model", "params"}
    if unknown:
        raise RowInvalid(f"{field_name}.{sorted(unknown)[0]}", "unknown field (allowed: text, model, params)")
    if "text" not in value:
        raise RowInvalid(f"{field_name}.text", "is required")
    model = value.get("model") or ""
    if not isinstance(model, str) or len(model) > 255:
        raise RowInvalid(f"{field_name}.model", "must be a string of at most 255 characters")
    params = value.get("params") or {}
    if not isinstance(params, dict):
        raise RowInvalid(f"{field_name}.params", "must be an object")
    return ParsedResponse(_text(value["text"], f"{field_name}.text"), model, params)


def _row_hash(messages, responses) -> str:
    blob = json.dumps([messages, [r.text for r in responses]], sort_keys=True, ensure_ascii=False)
    return "sha1:" + hashlib.sha1(blob.encode()).hexdigest()


def parse_row(line: int, row, mode: str) -> ParsedRow:
    if not isinstance(row, dict):
        raise RowInvalid(None, "must be a JSON object")
    if "messages" in row and row["messages"] is not None:
        messages = _messages(row["messages"], "messages")
    elif "prompt" in row and row["prompt"] is not None:
        if isinstance(row["prompt"], list):  # TRL conversational prompt
            messages = _messages(row["prompt"], "prompt")
        else:
            messages = [{"role": "user", "content": _text(row["prompt"], "prompt")}]
    else:
        raise RowInvalid("prompt", "is required (or 'messages')")
    metadata = row.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise RowInvalid("metadata", "must be an object")

    preferred = None
    if "chosen" in row or "rejected" in row:
        if mode == "rating":
            raise RowInvalid("chosen", "pre-paired rows need a pairwise or ranking project")
        if row.get("chosen") is None:
            raise RowInvalid("chosen", "is required with 'rejected'")
        if row.get("rejected") is None:
            raise RowInvalid("rejected", "is required with 'chosen'")
        responses = [
            ParsedResponse(_completion(row["chosen"], "chosen"), str(row.get("chosen_model") or "")),
            ParsedResponse(_completion(row["rejected"], "rejected"), str(row.get("rejected_model") or "")),
        ]
        preferred = 0
    else:
        if "responses" not in row or row["responses"] is None:
            raise RowInvalid("responses", "is required (or 'chosen' and 'rejected')")
        if not isinstance(row["responses"], list):
            raise RowInvalid("responses", f"must be a list, got {type(row['responses']).__name__}")
        responses = [_response(r, f"responses[{i}]") for i, r in enumerate(row["responses"])]
        need = 1 if mode == "rating" else 2
        if len(responses) < need:
            raise RowInvalid("responses", f"a {mode} project needs at least {need} response(s) per prompt")

    raw_id = row.get("id")
    if raw_id is None or raw_id == "":
        external_id = _row_hash(messages, responses)
    elif isinstance(raw_id, (str, int)) and not isinstance(raw_id, bool):
        external_id = str(raw_id)
        if len(external_id) > 255:
            raise RowInvalid("id", "must be at most 255 characters")
    else:
        raise RowInvalid("id", f"must be a string or an integer, got {type(raw_id).__name__}")
    return ParsedRow(line, external_id, messages, metadata, responses, preferred)


# --- building items ------------------------------------------------------------------------


def item_groups(mode: str, n: int, config: dict) -> list[list[int]]:
    """Which responses (by index) go together into items for a prompt with ``n`` responses."""
    if mode == "rating":
        return [[i] for i in range(n)]
    if mode == "pairwise":
        return [list(p) for p in itertools.combinations(range(n), 2)][: config["max_pairs_per_prompt"]]
    k = config["k"]
    if n <= k:
        return [list(range(n))]
    groups = [list(range(i, min(i + k, n))) for i in range(0, n, k)]
    if len(groups[-1]) < k:  # the last item takes the last k responses, so every item ranks exactly k
        groups[-1] = list(range(n - k, n))
    return groups


class _Writer:
    """Buffers parsed rows and writes them in batches with few statements."""

    def __init__(self, project: Project, round_name: str, result: ImportResult):
        self.project, self.round, self.result = project, round_name, result
        self.rows: list[ParsedRow] = []
        self.seen: set[str] = set()

    def add(self, row: ParsedRow):
        if row.external_id in self.seen:
            self.result.skipped += 1
            return
        self.seen.add(row.external_id)
        self.rows.append(row)

    def flush(self):
        rows, self.rows = self.rows, []
        if not rows:
            return
        project = self.project
        existing = set(
            Prompt.objects.filter(project=project, external_id__in=[r.external_id for r in rows]).values_list(
                "external_id", flat=True
            )
        )
        rows = [r for r in rows if r.external_id not in existing]
        self.result.skipped += len(existing)
        if not rows:
            return
        prompt_ids = bulk_insert(
            Prompt, ["project_id", "external_id", "messages", "metadata", "round", "created_at"],
            [(project.pk, r.external_id, r.messages, r.metadata, self.round, None) for r in rows],
        )
        response_rows, owners = [], []
        for row, prompt_id in zip(rows, prompt_ids):
            for resp in row.responses:
                response_rows.append((prompt_id, resp.text, resp.model, resp.checkpoint_id, resp.params, None))
                owners.append(row)
        response_ids = bulk_insert(
            Response, ["prompt_id", "text", "model_name", "checkpoint_id", "params", "created_at"], response_rows
        )
        ids_by_row: dict[int, list[int]] = {}
        for row, rid in zip(owners, response_ids):
            ids_by_row.setdefault(id(row), []).append(rid)

        overlap = project.config.get("overlap", 1)
        item_rows, item_members, imported = [], [], []
        for row, prompt_id in zip(rows, prompt_ids):
            rids = ids_by_row[id(row)]
            groups = row.groups if row.groups is not None else item_groups(project.mode, len(rids), project.config)
            for group in groups:
                item_rows.append((project.pk, prompt_id, False, None, 0, overlap, 0, False, self.round, None))
                item_members.append([rids[i] for i in group])
                imported.append(
                    (rids[row.preferred], [rids[i] for i in group if i != row.preferred])
                    if row.preferred is not None and row.preferred in group else None
                )
        item_ids = bulk_insert(
            Item, ["project_id", "prompt_id", "is_gold", "gold_answer", "priority", "overlap", "annotations_count",
                   "is_complete", "round", "created_at"],
            item_rows,
        )
        bulk_insert(
            ItemResponse, ["item_id", "response_id", "position"],
            [(item_id, rid, pos) for item_id, members in zip(item_ids, item_members) for pos, rid in enumerate(members)],
            returning=False,
        )
        annotation_rows = []
        for item_id, members, pref in zip(item_ids, item_members, imported):
            if pref is None:
                continue
            chosen, others = pref
            if project.mode == "pairwise":
                payload = {"outcome": "win", "chosen": chosen, "rejected": others[0], "strength": None,
                           "criteria": {}, "comment": ""}
            else:
                payload = {"order": [[chosen]] + [[o] for o in others], "not_rankable": False, "comment": ""}
            annotation_rows.append((item_id, None, None, Annotation.Source.IMPORTED, payload, {}, members, None,
                                    None, "", None, None))
        if annotation_rows:
            bulk_insert(
                Annotation, ["item_id", "rater_id", "assignment_id", "source", "payload", "raw_payload",
                             "display_order", "time_spent_ms", "gold_correct", "idempotency_key", "created_at",
                             "updated_at"],
                annotation_rows, returning=False,
            )
        self.result.prompts_created += len(rows)
        self.result.responses_created += len(response_ids)
        self.result.items_created += len(item_ids)
        self.result.annotations_created += len(annotation_rows)


def import_items(*, project: Project, stream: IO[bytes], filename: str, round_name: str = "",
                 progress: Callable[[int], None] | None = None) -> ImportResult:
    """Import a file into ``project``. Raises ImportFailed (nothing stored) on any bad row."""
    fmt = format_from_name(filename)
    if not isinstance(stream, io.IOBase) and not hasattr(stream, "read"):
        raise TypeError("stream must be a binary file object")
    result = ImportResult()
    errors: list[RowError] = []
    batch_size = settings.PS_IMPORT_BATCH_SIZE
    count = 0
    with transaction.atomic():
        writer = _Writer(project, round_name, result)
        for line, row in READERS[fmt](stream):
            count += 1
            if progress and count % 1000 == 0:
                progress(1000)
            try:
                if isinstance(row, RowInvalid):
                    raise row
                parsed = parse_row(line, row, project.mode)
            except RowInvalid as exc:
                errors.append(RowError(line, exc.field, exc.message))
                if len(errors) >= MAX_ERRORS:
                    break
                continue
            if errors:
                continue  # keep checking the rest of the file, but write nothing more
            writer.add(parsed)
            if len(writer.rows) >= batch_size:
                writer.flush()
        if not errors:
            writer.flush()
        if not errors and count == 0:
            errors.append(RowError(None, "file", "the file holds no rows"))
        if errors:
            transaction.set_rollback(True)
    if progress:
        progress(count % 1000)
    if errors:
        raise ImportFailed(errors)
    if result.prompts_created >= 1000:
        _analyze()
    return result


def _analyze():
    """Refresh planner statistics after a large import, so the queue query keeps a good plan at once
    rather than after autovacuum's next pass."""
    if connection.vendor != "postgresql" or connection.in_atomic_block:
        return
    with connection.cursor() as cursor:
        for model in (Prompt, Response, Item, ItemResponse, Annotation):
            cursor.execute(f'ANALYZE "{model._meta.db_table}"')
