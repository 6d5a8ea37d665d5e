"""Import prompts and responses from JSONL, CSV or Parquet, all rows or none.

Row shapes:
  {"id"?, "prompt" | "messages", "responses": [str | {"text", "model"?, "params"?}], "metadata"?}
  {"id"?, "prompt" | "messages", "chosen", "rejected", "chosen_model"?, "rejected_model"?, "metadata"?}
In a demonstration project ``responses`` is optional: each response is a model draft the rater may start
from (one item per draft), and a prompt without one is written from scratch (one item).

The file is read as a stream and written in batches inside one transaction; the first bad row
rolls everything back, and up to ``MAX_ERRORS`` problems are reported with their line and field.
Prompts are keyed by ``id`` (or, without one, a hash of the row), so a re-import creates nothing.

On PostgreSQL each batch is written with one COPY per table, and a worker thread sends batch n
while this thread parses batch n + 1, so Python and PostgreSQL use a core each
(``annotation.pg.imports.Pipeline``).
"""
from __future__ import annotations

import csv
import hashlib
import io
import itertools
import json
from dataclasses import dataclass, field
from typing import IO, Callable, Iterator

import orjson
from django.conf import settings
from django.db import connection, transaction

from . import boundary, pg
from .bulk import bulk_insert
from .errors import ImportFailed, Invalid, RowError
from .memory import gc_paused
from .models import Annotation, Item, ItemResponse, Project, Prompt, Response
from .payloads import imported_payload

MAX_ERRORS = 50
ROLES = ("system", "user", "assistant")
FORMATS = ("jsonl", "csv", "parquet")


@dataclass(slots=True)
class ParsedResponse:
    text: str
    model: str = ""
    params: dict = field(default_factory=dict)
    checkpoint_id: int | None = None  # a generated response: the checkpoint that wrote it


@dataclass(slots=True)
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

    def merge(self, other: ImportResult):
        self.prompts_created += other.prompts_created
        self.responses_created += other.responses_created
        self.items_created += other.items_created
        self.annotations_created += other.annotations_created
        self.skipped += other.skipped

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

    def under(self, parent: str) -> RowInvalid:
        """The same problem, its field named from ``parent`` (checks name fields relative to their value)."""
        return RowInvalid(parent if self.field is None else f"{parent}.{self.field}", self.message)


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


# orjson reads an integer beyond 64 bits as a float, where the json module keeps it exact: a line with
# a run of 20 digits takes the json module's path (digits are mapped to "0" to look for the run).
_DIGITS_TO_ZERO = bytes.maketrans(b"123456789", b"000000000")
_LONG_DIGIT_RUN = b"0" * 20


def read_jsonl(stream: IO[bytes]) -> Iterator[tuple[int, dict | RowInvalid]]:
    """Rows with their line numbers. orjson reads well-formed lines (several times faster); a line it
    refuses goes through the json module, which names the problem or reads what only it accepts (NaN)."""
    fast_loads = orjson.loads
    for line_no, raw in enumerate(stream, start=1):
        if _LONG_DIGIT_RUN not in raw.translate(_DIGITS_TO_ZERO):
            try:
                row = fast_loads(raw)
            except orjson.JSONDecodeError:
                pass
            else:
                yield line_no, row
                continue
        if not raw.strip():
            continue
        try:
            text = _decode(raw, line_no).rstrip("\r\n")  # else an error at the end is "line 2, column 1"
            try:
                row = json.loads(text)
            except json.JSONDecodeError as exc:
                raise RowInvalid(None, f"bad JSON: {exc.msg.removesuffix(' at')} at column {exc.colno}") from None
            except RecursionError:
                raise RowInvalid(boundary.deep_field(text) or None,
                                 f"is nested more than {boundary.MAX_DEPTH} levels deep") from None
            except ValueError as exc:  # an integer of more than 4,300 digits
                raise RowInvalid(None, f"bad JSON: {exc}") from None
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
    while True:
        try:
            values = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:  # e.g. a field longer than the reader's limit (131,072 characters): stop here
            yield start, RowInvalid(None, f"not readable as CSV: {exc}")
            return
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
                        raise RowInvalid(name, f"bad JSON: {exc.msg} at column {exc.colno} of the field") from None
                    except RecursionError:
                        raise RowInvalid(boundary.deep_field(value, name),
                                         f"is nested more than {boundary.MAX_DEPTH} levels deep") from None
                    except ValueError as exc:  # an integer of more than 4,300 digits
                        raise RowInvalid(name, f"bad JSON: {exc}") from None
                row[name] = value
        except RowInvalid as exc:
            yield line_no, exc
            continue
        numbered = sorted(
            (boundary.whole_number(k.split("_", 1)[1]), k) for k in row
            if k.startswith("response_") and boundary.whole_number(k.split("_", 1)[1]) is not None
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
    batches = parquet.iter_batches(batch_size=batch_size)
    while True:
        try:
            rows = next(batches).to_pylist()
        except StopIteration:
            return
        except Exception as exc:  # noqa: BLE001 - a damaged row group, or values Python cannot hold
            yield row_no + 1, RowInvalid(None, f"not readable from the Parquet file: {exc}")
            return
        for row in rows:
            row_no += 1
            yield row_no, row


READERS: dict[str, Callable] = {"jsonl": read_jsonl, "csv": read_csv, "parquet": read_parquet}


# --- checking a row ------------------------------------------------------------------------


def _text(value, field_name: str, max_chars: int, *, allow_empty: bool = False) -> str:
    if not isinstance(value, str):
        raise RowInvalid(field_name, f"must be a string, got {type(value).__name__}")
    if not allow_empty and (not value or value.isspace()):
        raise RowInvalid(field_name, "is empty")
    return _boundary(value, field_name, max_chars)


def _boundary(value, field_name: str | None, max_chars: int | None = None, *, depth: int = boundary.MAX_DEPTH):
    """``value`` through the text boundary (``annotation.boundary.check``), its problems named as row fields."""
    try:
        return boundary.check(value, field_name or "", max_chars=max_chars, max_depth=depth)
    except Invalid as exc:
        raise RowInvalid(exc.field, exc.message) from None


def _messages(value, field_name: str, max_chars: int) -> list[dict]:
    if not isinstance(value, list) or not value:
        raise RowInvalid(field_name, "must be a non-empty list of {role, content} messages")
    out = []
    for i, msg in enumerate(value):
        where = f"{field_name}[{i}]"
        if not isinstance(msg, dict):
            raise RowInvalid(where, "must be an object with role and content")
        if msg.get("role") not in ROLES:
            raise RowInvalid(f"{where}.role", f"must be one of {', '.join(ROLES)}")
        out.append({"role": msg["role"], "content": _text(msg.get("content"), f"{where}.content", max_chars)})
    return out


def _completion(value, field_name: str, max_chars: int) -> str:
    """A chosen/rejected side: a string, or a list of assistant messages (TRL's conversational shape)."""
    if isinstance(value, list):
        msgs = _messages(value, field_name, max_chars)
        if msgs[-1]["role"] != "assistant":
            raise RowInvalid(field_name, "the last message must be the assistant's")
        return msgs[-1]["content"]
    return _text(value, field_name, max_chars)


_RESPONSE_FIELDS = frozenset(("text", "model", "params"))


def _response(value, max_chars: int) -> ParsedResponse:
    """One of ``responses``; fields are named relative to it (the caller adds ``responses[i]``)."""
    if isinstance(value, str):
        return ParsedResponse(_text(value, None, max_chars))
    if not isinstance(value, dict):
        raise RowInvalid(None, "must be a string or an object with text")
    if not _RESPONSE_FIELDS.issuperset(value):
        unknown = sorted(set(value) - _RESPONSE_FIELDS)[0]
        raise RowInvalid(unknown, "unknown field (allowed: text, model, params)")
    if "text" not in value:
        raise RowInvalid("text", "is required")
    model = _model_name(value.get("model"), "model")
    params = value.get("params") or {}
    if params or not isinstance(params, dict):
        _json_object(params, "params")
    return ParsedResponse(_text(value["text"], "text", max_chars), model, params)


def _json_object(value, field_name: str) -> dict:
    """An object to store as JSON: only JSON's own types, finite numbers, text that passes the boundary."""
    if not isinstance(value, dict):
        raise RowInvalid(field_name, "must be an object")
    if value:
        try:
            json.dumps(value, allow_nan=False)
        except ValueError:
            raise RowInvalid(field_name, "holds NaN or Infinity, which JSON cannot store") from None
        except TypeError as exc:
            raise RowInvalid(field_name, f"is not JSON: {exc}") from None
        except RecursionError:
            raise RowInvalid(field_name, f"is nested more than {boundary.MAX_DEPTH} levels deep") from None
        _boundary(value, field_name)
    return value


MAX_NAME_CHARS = 255  # model names and ids: the columns' length


def _model_name(value, field_name: str) -> str:
    """A model's name: a string (a number is taken as its text) of at most 255 characters, or nothing."""
    if value is None or value == "":
        return ""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise RowInvalid(field_name, f"must be a string, got {type(value).__name__}")
    return _boundary(value, field_name, MAX_NAME_CHARS)


def _row_hash(messages, responses) -> str:
    blob = json.dumps([messages, [r.text for r in responses]], sort_keys=True, ensure_ascii=False)
    return "sha1:" + hashlib.sha1(blob.encode()).hexdigest()


def parse_row(line: int, row, mode: str, *, max_chars: int | None = None) -> ParsedRow:
    """Check one row and return it parsed; raises RowInvalid naming the field.
    ``max_chars`` defaults to ``settings.PS_MAX_TEXT_CHARS`` (an import reads it once, not per row)."""
    if max_chars is None:
        max_chars = settings.PS_MAX_TEXT_CHARS
    if not isinstance(row, dict):
        raise RowInvalid(None, "must be a JSON object")
    if "messages" in row and row["messages"] is not None:
        messages = _messages(row["messages"], "messages", max_chars)
    elif "prompt" in row and row["prompt"] is not None:
        if isinstance(row["prompt"], list):  # TRL conversational prompt
            messages = _messages(row["prompt"], "prompt", max_chars)
        else:
            messages = [{"role": "user", "content": _text(row["prompt"], "prompt", max_chars)}]
    else:
        raise RowInvalid("prompt", "is required (or 'messages')")
    metadata = row.get("metadata") or {}
    if metadata or not isinstance(metadata, dict):
        _json_object(metadata, "metadata")

    preferred = None
    if "chosen" in row or "rejected" in row:
        if mode in ("rating", "demonstration", "arena"):
            raise RowInvalid("chosen", "pre-paired rows need a pairwise or ranking project")
        if row.get("chosen") is None:
            raise RowInvalid("chosen", "is required with 'rejected'")
        if row.get("rejected") is None:
            raise RowInvalid("rejected", "is required with 'chosen'")
        responses = [
            ParsedResponse(_completion(row["chosen"], "chosen", max_chars),
                           _model_name(row.get("chosen_model"), "chosen_model")),
            ParsedResponse(_completion(row["rejected"], "rejected", max_chars),
                           _model_name(row.get("rejected_model"), "rejected_model")),
        ]
        preferred = 0
    elif mode == "demonstration" and row.get("responses") is None:
        responses = []  # the rater writes the answer from scratch
    else:
        if ("responses" not in row or row["responses"] is None) and mode == "arena":
            row = {**row, "responses": []}  # an arena's prompts are suggestions for raters
        if "responses" not in row or row["responses"] is None:
            raise RowInvalid("responses", "is required (or 'chosen' and 'rejected')")
        if not isinstance(row["responses"], list):
            raise RowInvalid("responses", f"must be a list, got {type(row['responses']).__name__}")
        responses = []
        for i, value in enumerate(row["responses"]):
            try:
                responses.append(_response(value, max_chars))
            except RowInvalid as exc:
                raise exc.under(f"responses[{i}]") from None
        need = {"rating": 1, "demonstration": 0, "arena": 0}.get(mode, 2)  # an arena takes prompts alone
        if len(responses) < need:
            raise RowInvalid("responses", f"a {mode} project needs at least {need} response(s) per prompt")

    raw_id = row.get("id")
    if raw_id is None or raw_id == "":
        external_id = _row_hash(messages, responses)
    elif isinstance(raw_id, (str, int)) and not isinstance(raw_id, bool):
        if isinstance(raw_id, int) and (raw_id >= 10**MAX_NAME_CHARS or raw_id <= -10**(MAX_NAME_CHARS - 1)):
            raise RowInvalid("id", f"must be at most {MAX_NAME_CHARS} characters")
        external_id = _boundary(str(raw_id), "id", MAX_NAME_CHARS)
    else:
        raise RowInvalid("id", f"must be a string or an integer, got {type(raw_id).__name__}")
    return ParsedRow(line, external_id, messages, metadata, responses, preferred)


# --- building items ------------------------------------------------------------------------


def item_groups(mode: str, n: int, config: dict) -> list[list[int]]:
    """Which responses (by index) go together into items for a prompt with ``n`` responses.

    A demonstration item holds one response, the model draft the rater may start from, or none."""
    if mode == "rating":
        return [[i] for i in range(n)]
    if mode == "demonstration":
        return [[i] for i in range(n)] or [[]]
    if mode == "pairwise":
        return [list(p) for p in itertools.combinations(range(n), 2)][: config["max_pairs_per_prompt"]]
    if mode == "arena":
        return []  # an arena's items are its battles, made by raters (training.arena)
    k = config["k"]
    if n <= k:
        return [list(range(n))]
    groups = [list(range(i, min(i + k, n))) for i in range(0, n, k)]
    if len(groups[-1]) < k:  # the last item takes the last k responses, so every item ranks exactly k
        groups[-1] = list(range(n - k, n))
    return groups


class _Writer:
    """Buffers parsed rows and writes them in batches with few statements: through bulk_create
    (``write_orm``), or on PostgreSQL one COPY per table (``annotation.pg.imports.CopyWriter``)."""

    def __init__(self, project: Project, round_name: str, result: ImportResult, *, check_existing: bool = True):
        self.project, self.round, self.result = project, round_name, result
        self.check_existing = check_existing  # False when the project had no prompts as the import began
        self.rows: list[ParsedRow] = []
        self.seen: set[str] = set()
        self._groups: dict[int, list[list[int]]] = {}  # items per prompt depend only on its response count
        self._copy = None  # the COPY side, made when first used

    def add(self, row: ParsedRow):
        if row.external_id in self.seen:
            self.result.skipped += 1
            return
        self.seen.add(row.external_id)
        self.rows.append(row)

    def take(self) -> list[ParsedRow]:
        rows, self.rows = self.rows, []
        return rows

    def flush(self):
        """Write the rows added since the last batch, at once."""
        rows = self.take()
        if not rows:
            return
        if not pg.enabled():
            self.write_orm(rows, self.result)
            return
        self.copy_writer().write(rows, self.result)

    def copy_writer(self):
        if self._copy is None:
            self._copy = pg.imports.CopyWriter(self)
        return self._copy

    def groups_of(self, row: ParsedRow) -> list[list[int]]:
        if row.groups is not None:
            return row.groups
        groups = self._groups.get(len(row.responses))
        if groups is None:
            n = len(row.responses)
            groups = self._groups[n] = item_groups(self.project.mode, n, self.project.config)
        return groups

    def write_orm(self, rows: list[ParsedRow], counts: ImportResult):
        """Write one batch through the ORM (SQLite and other databases)."""
        project = self.project
        if self.check_existing:
            existing = set(
                Prompt.objects.filter(project=project, external_id__in=[r.external_id for r in rows])
                .values_list("external_id", flat=True)
            )
            rows = [r for r in rows if r.external_id not in existing]
            counts.skipped += len(existing)
            if not rows:
                return
        prompt_ids = bulk_insert(
            Prompt, ["project_id", "external_id", "messages", "metadata", "round", "created_at"],
            [(project.pk, r.external_id, r.messages, r.metadata, self.round, None) for r in rows],
        )
        response_rows = [(prompt_id, resp.text, resp.model, resp.checkpoint_id, resp.params, None)
                         for row, prompt_id in zip(rows, prompt_ids) for resp in row.responses]
        response_ids = iter(bulk_insert(
            Response, ["prompt_id", "text", "model_name", "checkpoint_id", "params", "created_at"], response_rows
        ))

        overlap = project.config.get("overlap", 1)
        item_rows, item_members, imported = [], [], []
        for row, prompt_id in zip(rows, prompt_ids):
            rids = [next(response_ids) for _ in row.responses]
            for group in self.groups_of(row):
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
        annotation_rows = [
            (item_id, None, None, Annotation.Source.IMPORTED, imported_payload(project.mode, *pref), {}, members,
             None, None, "", None, None)
            for item_id, members, pref in zip(item_ids, item_members, imported) if pref is not None
        ]
        bulk_insert(
            Annotation, ["item_id", "rater_id", "assignment_id", "source", "payload", "raw_payload",
                         "display_order", "time_spent_ms", "gold_correct", "idempotency_key", "created_at",
                         "updated_at"],
            annotation_rows, returning=False,
        )
        counts.prompts_created += len(rows)
        counts.responses_created += len(response_rows)
        counts.items_created += len(item_ids)
        counts.annotations_created += len(annotation_rows)


def import_items(*, project: Project, stream: IO[bytes], filename: str, round_name: str = "",
                 progress: Callable[[int], None] | None = None) -> ImportResult:
    """Import a file into ``project``. Raises ImportFailed (nothing stored) on any bad row."""
    fmt = format_from_name(filename)
    if not isinstance(stream, io.IOBase) and not hasattr(stream, "read"):
        raise TypeError("stream must be a binary file object")
    try:
        boundary.check_text(round_name or "", "round", max_chars=Prompt._meta.get_field("round").max_length)
    except Invalid as exc:
        raise ImportFailed([RowError(None, exc.field, exc.message)]) from None
    result = ImportResult()
    errors: list[RowError] = []
    batch_size = settings.PS_IMPORT_BATCH_SIZE
    max_chars = settings.PS_MAX_TEXT_CHARS
    mode = project.mode
    count = 0
    with gc_paused(), transaction.atomic():
        # An empty project needs no lookups of existing prompts (rows repeated in the file are caught by
        # ``seen``; a concurrent import into the same project fails on the unique constraint either way).
        writer = _Writer(project, round_name, result,
                         check_existing=Prompt.objects.filter(project=project).exists())
        pipeline = None
        if pg.enabled():
            connection.ensure_connection()
            pipeline = pg.imports.Pipeline(writer.copy_writer(), connection.connection, ImportResult())

        def write(rows: list[ParsedRow]):
            if pipeline:
                pipeline.put(rows)
            elif rows:
                writer.write_orm(rows, result)

        try:
            for line, row in READERS[fmt](stream):
                count += 1
                if progress and count % 1000 == 0:
                    progress(1000)
                try:
                    if isinstance(row, RowInvalid):
                        raise row
                    parsed = parse_row(line, row, mode, max_chars=max_chars)
                except RowInvalid as exc:
                    errors.append(RowError(line, exc.field, exc.message))
                    if len(errors) >= MAX_ERRORS:
                        break
                    continue
                if errors:
                    continue  # keep checking the rest of the file, but write nothing more
                writer.add(parsed)
                if len(writer.rows) >= batch_size:
                    write(writer.take())
            if not errors:
                write(writer.take())
                if pipeline:
                    pipeline.finish()
        finally:
            if pipeline:
                pipeline.close()  # before the transaction ends, whatever happened
        if pipeline:
            result.merge(pipeline.counts)
        if not errors and count == 0:
            errors.append(RowError(None, "file", "the file holds no rows"))
        if errors:
            transaction.set_rollback(True)
    if progress:
        progress(count % 1000)
    if errors:
        raise ImportFailed(errors)
    analyze_if_large(result)
    return result


def analyze_if_large(result: ImportResult) -> None:
    """Planner statistics for what an import wrote, at once, when it is large for the tables it went into
    (``pg.stats.warranted``); nothing inside a transaction, whose caller calls this again once it has committed."""
    if result.items_created and pg.enabled() and pg.stats.warranted(Item, result.items_created):
        pg.stats.analyze_after_import(annotations=result.annotations_created > 0)
