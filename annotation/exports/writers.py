"""File formats for export rows: JSONL, CSV and Parquet as byte streams; a Hugging Face datasets directory.

Every encoder takes an iterator of rows and yields bytes as it goes, so the same code feeds an HTTP
download, a file on disk and a snapshot, and nothing holds more than one batch of rows.
"""
from __future__ import annotations

import csv
import hashlib
import io
import itertools
import os
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path
from typing import Iterable, Iterator

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from annotation.memory import gc_paused

ROWS_PER_CHUNK = 2000  # JSONL / CSV rows joined into one chunk
ROWS_PER_GROUP = 20_000  # Parquet rows per row group
PARQUET_BUFFER = 16 << 20  # bytes Arrow holds before handing them to Python


def _chunks(rows: Iterable[dict], size: int) -> Iterator[list[dict]]:
    it = iter(rows)
    while chunk := list(itertools.islice(it, size)):
        yield chunk
        del chunk  # a caller that lets go of a chunk frees it before the next one is made


def encode_jsonl(rows: Iterable[dict], schema: pa.Schema | None = None) -> Iterator[bytes]:
    dumps, newline = orjson.dumps, orjson.OPT_APPEND_NEWLINE
    for chunk in _chunks(rows, ROWS_PER_CHUNK):
        yield b"".join([dumps(row, option=newline) for row in chunk])


def _cell(value):
    if value is None:
        return ""
    if isinstance(value, (list, dict)):
        return orjson.dumps(value).decode()
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


def encode_csv(rows: Iterable[dict], schema: pa.Schema) -> Iterator[bytes]:
    """CSV with a header; message lists and other nested values are JSON text in their cell."""
    names = schema.names
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(names)
    for chunk in _chunks(rows, ROWS_PER_CHUNK):
        writer.writerows([[_cell(row.get(name)) for name in names] for row in chunk])
        yield buffer.getvalue().encode("utf-8")
        buffer.seek(0)
        buffer.truncate()
    if buffer.tell():
        yield buffer.getvalue().encode("utf-8")


class _Drain(io.RawIOBase):
    """A write-only file that hands back what was written since the last ``take``."""

    def __init__(self):
        super().__init__()
        self._parts: list[bytes] = []
        self._pos = 0

    def writable(self):
        return True

    def write(self, data):
        data = bytes(data)
        self._parts.append(data)
        self._pos += len(data)
        return len(data)

    def tell(self):
        return self._pos

    def take(self) -> bytes:
        data, self._parts = b"".join(self._parts), []
        return data


# Free text: dictionary encoding and min/max statistics only cost time on these columns.
FREE_TEXT = {"prompt", "chosen", "rejected", "completion", "responses", "payload", "raw_payload", "criteria",
             "created_at", "updated_at", "prompt_id", "messages"}


def encode_parquet(rows: Iterable[dict], schema: pa.Schema) -> Iterator[bytes]:
    """Parquet, one row group per ``ROWS_PER_GROUP`` rows, compressed while the next group is built.

    Turning a group's row dicts into Arrow columns needs the GIL; encoding and zstd compressing it do not,
    so ``write_table`` runs in a second thread while this one builds the next group (one group at most
    waits). Arrow buffers the file's bytes, so that thread does not wait for the GIL to hand each page to
    Python: this thread moves them on (flush, take) between writes.
    """
    sink = _Drain()
    stream = pa.BufferedOutputStream(pa.PythonFile(sink, mode="w"), PARQUET_BUFFER)
    coded = [name for name in schema.names if name not in FREE_TEXT]
    row_type = pa.struct(list(schema))
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="parquet") as pool, \
            pq.ParquetWriter(stream, schema, compression="zstd", use_dictionary=coded,
                             write_statistics=coded) as writer:
        pending = None
        try:
            for chunk in _chunks(rows, ROWS_PER_GROUP):
                # Arrow reads each dict's fields itself: faster than transposing rows into lists first;
                # a missing key is a null, as with row.get
                table = pa.Table.from_struct_array(pa.array(chunk, type=row_type))
                del chunk  # the group's rows go before the next group's are made
                if pending is not None:
                    pending.result()
                    stream.flush()
                    if data := sink.take():
                        yield data
                pending = pool.submit(writer.write_table, table)
            if pending is not None:
                pending.result()
        finally:
            if pending is not None:
                wait([pending])  # closing the writer (on an error too) must not race the write
    stream.close()
    if data := sink.take():
        yield data


ENCODERS = {"jsonl": encode_jsonl, "csv": encode_csv, "parquet": encode_parquet}


def encode(rows: Iterable[dict], fmt: str, schema: pa.Schema) -> Iterator[bytes]:
    return ENCODERS[fmt](rows, schema)


def write_file(rows: Iterable[dict], fmt: str, schema: pa.Schema, path: str | os.PathLike) -> tuple[int, str]:
    """Write ``rows`` to ``path`` (atomically: a temporary file renamed into place); return (bytes, sha256)."""
    path = Path(path)
    if fmt == "hf":
        save_hf_dataset(rows, schema, path)
        return directory_size(path), directory_sha256(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    digest, size = hashlib.sha256(), 0
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh, gc_paused():
            for data in encode(rows, fmt, schema):
                fh.write(data)
                digest.update(data)
                size += len(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return size, digest.hexdigest()


def save_hf_dataset(rows: Iterable[dict], schema: pa.Schema, path: str | os.PathLike) -> Path:
    """A ``datasets.Dataset.save_to_disk`` directory: rows go to Parquet first, so memory stays flat."""
    import datasets  # noqa: PLC0415 - heavy import, only for this format

    path = Path(path)
    if path.exists():
        raise FileExistsError(f"{path} already exists")
    path.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{path.name}-", dir=path.parent))
    try:
        parquet = work / "rows.parquet"
        write_file(rows, "parquet", schema, parquet)
        features = datasets.Features.from_arrow_schema(schema)
        if pq.ParquetFile(parquet).metadata.num_rows:
            dataset = datasets.Dataset.from_parquet(str(parquet), cache_dir=str(work / "cache"), features=features)
        else:  # from_parquet finds no data to read in an empty file: the same columns, no rows
            dataset = datasets.Dataset.from_dict({name: [] for name in schema.names}, features=features)
        dataset.save_to_disk(str(work / "dataset"))
        os.replace(work / "dataset", path)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return path


def directory_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def directory_sha256(path: Path) -> str:
    """One digest over a directory: each file's relative name and bytes, in name order."""
    digest = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(f.relative_to(path).as_posix().encode() + b"\0")
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    if path.is_dir():
        return directory_sha256(path)
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class HubPushError(Exception):
    pass


def push_to_hub(path: str | os.PathLike, repo_id: str, *, token: str | None = None, private: bool = True) -> str:
    """Upload a saved dataset directory (or a JSONL / Parquet / CSV file) to the Hugging Face Hub.

    Needs a token (argument or ``HF_TOKEN``) and network; raises HubPushError saying which is missing.
    """
    token = token or os.environ.get("HF_TOKEN")
    if not token:
        raise HubPushError("pushing to the Hub needs a token: set HF_TOKEN or pass --hub-token")
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        raise HubPushError("HF_HUB_OFFLINE is set: this machine is offline, nothing was pushed")
    import datasets  # noqa: PLC0415

    path = Path(path)
    if path.is_dir():
        dataset = datasets.load_from_disk(str(path))
    else:
        loader = {".jsonl": "json", ".parquet": "parquet", ".csv": "csv"}.get(path.suffix)
        if loader is None or not path.is_file():
            raise HubPushError(f"{path} is not an export (a .jsonl, .parquet or .csv file, or a datasets directory)")
        dataset = datasets.load_dataset(loader, data_files=str(path), split="train")
    try:
        dataset.push_to_hub(repo_id, token=token, private=private)
    except Exception as exc:  # network and auth errors come in many types
        raise HubPushError(f"push to {repo_id} failed: {exc}") from exc
    return f"https://huggingface.co/datasets/{repo_id}"
