"""The importer's writer on PostgreSQL: each batch as one COPY per table, in COPY's text format built here.

A batch goes in three steps: ``prepare`` leaves out prompts the project has already and draws ids for the
rest from the tables' sequences (so children can name their parents), ``format_copy`` builds the lines,
``copy`` sends them. ``Pipeline`` runs the database's side in a second thread, so parsing (Python, one core)
and writing (PostgreSQL, another) overlap. The ORM's reference is ``annotation.importer._Writer.write_orm``.
"""
from __future__ import annotations

import json
import queue
import threading
from concurrent.futures import CancelledError, Future
from typing import Callable

import orjson
from django.db import connection
from django.utils import timezone

from ..models import Annotation, Item, ItemResponse, Prompt, Response
from ..payloads import imported_payload
from .bulk import copy_rows, copy_text, next_ids, sequences


def _json_text(value) -> str:
    """A JSON value as a field of COPY's text format. Empty objects (most metadata and params) cost
    nothing; others go through the json module, as the ORM would write them."""
    if not value and isinstance(value, dict):
        return "{}"
    return json.dumps(value, ensure_ascii=False).replace("\\", "\\\\")


def _messages_text(messages: list[dict]) -> str:
    # orjson is safe here: messages hold only strings, checked by the importer's parse_row (or read back from a Prompt).
    return orjson.dumps(messages).decode().replace("\\", "\\\\")


NULL = "\\N"  # COPY's text format for NULL
PROMPT_COLUMNS = ("id", "project_id", "external_id", "messages", "metadata", "round", "created_at")
RESPONSE_COLUMNS = ("id", "prompt_id", "text", "model_name", "checkpoint_id", "params", "created_at")
ITEM_COLUMNS = ("id", "project_id", "prompt_id", "is_gold", "gold_answer", "priority", "overlap",
                "annotations_count", "is_complete", "round", "created_at")
ITEM_RESPONSE_COLUMNS = ("item_id", "response_id", "position")
ANNOTATION_COLUMNS = ("item_id", "rater_id", "assignment_id", "source", "payload", "raw_payload",
                      "display_order", "time_spent_ms", "gold_correct", "idempotency_key", "created_at",
                      "updated_at")


class CopyBatch:
    """One batch in COPY's text format: the lines for each table, and how many rows they make."""

    __slots__ = ("prompts", "responses", "items", "members", "annotations")

    def __init__(self):
        self.prompts: list[str] = []
        self.responses: list[str] = []
        self.items: list[str] = []
        self.members: list[str] = []
        self.annotations: list[str] = []

    def tables(self) -> tuple:
        return ((Prompt, PROMPT_COLUMNS, self.prompts), (Response, RESPONSE_COLUMNS, self.responses),
                (Item, ITEM_COLUMNS, self.items), (ItemResponse, ITEM_RESPONSE_COLUMNS, self.members),
                (Annotation, ANNOTATION_COLUMNS, self.annotations))

    @classmethod
    def joined(cls, batches: list[CopyBatch]) -> CopyBatch:
        if len(batches) == 1:
            return batches[0]
        out = cls()
        for batch in batches:
            for name in cls.__slots__:
                getattr(out, name).extend(getattr(batch, name))
        return out

    def add_to(self, counts):
        counts.prompts_created += len(self.prompts)
        counts.responses_created += len(self.responses)
        counts.items_created += len(self.items)
        counts.annotations_created += len(self.annotations)


class CopyWriter:
    """The COPY side of an importer's writer (``rows``: its batches, project, round and item groups)."""

    def __init__(self, rows):
        self.rows = rows
        self._sequences: list[str] = []

    def write(self, rows: list, counts):
        """One batch, at once, in the caller's thread; what it made added to ``counts``."""
        connection.ensure_connection()
        with connection.wrap_database_errors, connection.connection.cursor() as cursor:
            keep, ids, skipped = self.prepare(cursor, self.needs(rows))
            counts.skipped += skipped
            self.copy(cursor, self.format_copy(self.kept(rows, keep), ids), counts)

    def needs(self, rows: list) -> list[tuple[str, int, int]]:
        """(external id, responses, items) of each row: what ``prepare`` looks up and draws ids for."""
        return [(row.external_id, len(row.responses), len(self.rows.groups_of(row))) for row in rows]

    @staticmethod
    def kept(rows: list, keep: list[int] | None) -> list:
        return rows if keep is None else [rows[i] for i in keep]

    def prepare(self, cursor, needs: list[tuple[str, int, int]]) -> tuple[list[int] | None, list[list[int]], int]:
        """Through the psycopg ``cursor``: which rows to write (their indexes; None: all), prompt, response
        and item ids for them, and how many rows the project has already."""
        keep, skipped = None, 0
        if self.rows.check_existing:
            cursor.execute(
                f'SELECT external_id FROM "{Prompt._meta.db_table}" WHERE project_id = %s AND external_id = ANY(%s)',
                [self.rows.project.pk, [external_id for external_id, _, _ in needs]],
            )
            existing = {external_id for (external_id,) in cursor.fetchall()}
            if existing:
                keep = [i for i, (external_id, _, _) in enumerate(needs) if external_id not in existing]
                needs = [needs[i] for i in keep]
                skipped = len(existing)
        if not needs:
            return keep, [[], [], []], skipped
        if not self._sequences:
            self._sequences = sequences(cursor, [Prompt, Response, Item])
        wanted = (len(needs), sum(n for _, n, _ in needs), sum(n for _, _, n in needs))
        return keep, next_ids(cursor, list(zip(self._sequences, wanted))), skipped

    def format_copy(self, rows: list, ids: list[list[int]]) -> CopyBatch:
        """``rows`` as COPY lines, numbered with ``ids`` (prompt, response and item ids, in order)."""
        batch = CopyBatch()
        if not rows:
            return batch
        project_id, mode = self.rows.project.pk, self.rows.project.mode
        add_prompt, add_response, add_item, add_member, add_annotation = (
            batch.prompts.append, batch.responses.append, batch.items.append, batch.members.append,
            batch.annotations.append)
        esc, json_text, groups_of = copy_text, _json_text, self.rows.groups_of
        now = timezone.now().isoformat()
        round_text = esc(self.rows.round)
        # The fields after the ones that vary, the same on every line of a table.
        prompt_tail = f"\t{round_text}\t{now}\n"
        response_tail = f"\t{NULL}\t{{}}\t{now}\n"  # no checkpoint, no params: the common case
        item_tail = f"\tf\t{NULL}\t0\t{self.rows.project.config.get('overlap', 1)}\t0\tf\t{round_text}\t{now}\n"
        next_response, next_item = iter(ids[1]).__next__, iter(ids[2]).__next__
        for row, prompt_id in zip(rows, ids[0]):
            add_prompt(f"{prompt_id}\t{project_id}\t{esc(row.external_id)}\t{_messages_text(row.messages)}\t"
                       f"{json_text(row.metadata)}{prompt_tail}")
            rids = []
            for resp in row.responses:
                rid = next_response()
                rids.append(rid)
                if resp.checkpoint_id is None and not resp.params:
                    add_response(f"{rid}\t{prompt_id}\t{esc(resp.text)}\t{esc(resp.model)}{response_tail}")
                else:
                    add_response(f"{rid}\t{prompt_id}\t{esc(resp.text)}\t{esc(resp.model)}\t"
                                 f"{NULL if resp.checkpoint_id is None else resp.checkpoint_id}\t"
                                 f"{json_text(resp.params)}\t{now}\n")
            preferred = row.preferred
            for group in groups_of(row):
                item_id = next_item()
                add_item(f"{item_id}\t{project_id}\t{prompt_id}{item_tail}")
                item_members = [rids[i] for i in group]
                for position, rid in enumerate(item_members):
                    add_member(f"{item_id}\t{rid}\t{position}\n")
                if preferred is not None and preferred in group:
                    chosen = rids[preferred]
                    payload = imported_payload(mode, chosen, [r for r in item_members if r != chosen])
                    add_annotation(
                        f"{item_id}\t{NULL}\t{NULL}\t{Annotation.Source.IMPORTED.value}\t{json_text(payload)}\t"
                        f"{{}}\t{json_text(item_members)}\t{NULL}\t{NULL}\t\t{now}\t{now}\n"
                    )
        return batch

    @staticmethod
    def copy(cursor, batch: CopyBatch, counts):
        """Send ``batch`` through the psycopg ``cursor``; add what it made to ``counts``."""
        for model, columns, lines in batch.tables():
            copy_rows(cursor, model, columns, lines)
        batch.add_to(counts)


class Pipeline:
    """PostgreSQL: this thread parses and formats batches while a worker thread talks to the database,
    so Python (on one core) and PostgreSQL (on another) work at the same time.

    The worker is the only user of the caller's psycopg connection (inside the caller's transaction)
    until ``close``. A parsed batch is first sent to be prepared (existing prompts looked up, ids
    drawn) and is formatted only once the next batch is parsed, so this thread seldom waits. The worker
    takes every job waiting in the queue at once: preparations first, then the formatted batches as
    one COPY per table, so while PostgreSQL is the slower side its COPYs grow (fewer statements) and
    while Python is, each batch goes at once. The queue holds ``QUEUED_JOBS`` jobs at most, so memory
    stays bounded. After a failure the worker skips the jobs left, and ``put`` / ``close`` raise it.
    """

    QUEUED_JOBS = 8  # a preparation and a formatted batch per batch: four batches

    def __init__(self, writer: CopyWriter, pg, counts):
        self.writer, self.pg = writer, pg
        self.counts = counts  # what the worker made (from zero), merged by the caller after ``close``
        self.error: BaseException | None = None  # the worker's failure: it skips every job after it
        self.reported = False
        self.jobs: queue.Queue = queue.Queue(maxsize=self.QUEUED_JOBS)
        self.pending: tuple[list, Future] | None = None  # parsed, being prepared
        self.thread = threading.Thread(target=self._run, name="import-writer", daemon=True)
        self.thread.start()

    def _run(self):
        with self.pg.cursor() as cursor:
            running = True
            while running:
                jobs = [self.jobs.get()]
                while True:
                    try:
                        jobs.append(self.jobs.get_nowait())
                    except queue.Empty:
                        break
                running = None not in jobs
                preparations = [job for job in jobs if job is not None and job[0] == "prepare"]
                batches = [batch for kind, batch, _ in filter(None, jobs) if kind == "copy"]
                for _, needs, future in preparations:
                    self._do(future, self.writer.prepare, cursor, needs)
                if batches:
                    self._do(None, self.writer.copy, cursor, CopyBatch.joined(batches), self.counts)

    def _do(self, future: Future | None, work: Callable, *args):
        if self.error is None:
            try:
                result = work(*args)
            except BaseException as exc:  # handed to the caller's thread by ``_raise``
                self.error = exc
            else:
                if future is not None:
                    future.set_result(result)
                return
        if future is not None:
            future.cancel()

    def put(self, rows: list):
        """Queue a parsed batch to be prepared; format and queue the one before it."""
        self._raise()
        prepared = None
        if rows:
            prepared = Future()
            self.jobs.put(("prepare", self.writer.needs(rows), prepared))
        self._write_pending()
        if prepared:
            self.pending = rows, prepared

    def finish(self):
        """Format and queue the last batch (at the end of the file)."""
        self._write_pending()

    def _write_pending(self):
        if self.pending is None:
            return
        rows, prepared = self.pending
        self.pending = None
        try:
            keep, ids, skipped = prepared.result()
        except CancelledError:
            self._raise()
            raise
        self.writer.rows.result.skipped += skipped
        rows = self.writer.kept(rows, keep)
        if rows:
            self._raise()
            self.jobs.put(("copy", self.writer.format_copy(rows, ids), None))

    def close(self):
        """Wait for the queued jobs; raise what the worker met."""
        if self.thread.is_alive():
            self.jobs.put(None)
            self.thread.join()
        self._raise()

    def _raise(self):
        if self.error is not None and not self.reported:
            self.reported = True
            with connection.wrap_database_errors:  # psycopg's errors as Django's (IntegrityError, ...)
                raise self.error
