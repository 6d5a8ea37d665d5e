"""JSON-lines events: the only thing the engine writes to stdout.

One object per line, flushed at once, so a parent process (the Celery task) can follow a run as it goes:

    {"event": "setup", "world_size": 2, "device": "cuda", "dtype": {"weights": "fp32", "compute": "bf16",
     "base": "bf16"}, "attn_implementation": "sdpa"}
    {"event": "data_stats", "data_stats": {"train_rows": 640, "eval_rows": 72, "dropped_too_long": 8,
     "truncated": 0, "ties_excluded": 12}}
    {"event": "started", "method": "dpo", "total_steps": 200}
    {"event": "progress", "step": 10, "total": 200, "eta_s": 41.2, "epoch": 0.4}
    {"event": "metrics", "step": 10, "metrics": {"loss": 0.61, "rewards/accuracies": 0.75}}
    {"event": "checkpoint", "step": 200, "path": "/abs/checkpoint-200", "kind": "lora", "size_bytes": 35210,
     "metrics": {"eval_accuracy": 0.8}}
    {"event": "done", "result": {...}}
    {"event": "error", "message": "...", "traceback": "..."}

Every event also carries "time" (Unix seconds). This module imports nothing heavy; the Trainer callback that feeds
a Reporter lives in callbacks.py.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, TextIO


def _clean(value: Any) -> Any:
    """Make a value JSON-safe: NaN/inf become None (JSON has no NaN), tensors and numpy scalars become floats."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return value
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return value


def float_metrics(logs: dict[str, Any]) -> dict[str, float]:
    """The numeric entries of a log dict."""
    out = {}
    for key, value in logs.items():
        if hasattr(value, "item"):
            value = value.item()
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out[key] = float(value)
    return out


def dir_size(path: str | os.PathLike) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


class Reporter:
    """Writes events as JSON lines to `stream` (default: stdout) and keeps them in `self.events`."""

    def __init__(self, stream: TextIO | None = None, echo: bool = True):
        self.stream = stream if stream is not None else sys.stdout
        self.echo = echo
        self.events: list[dict[str, Any]] = []

    def emit(self, event: str, **fields: Any) -> dict[str, Any]:
        record = _clean({"event": event, **fields, "time": round(time.time(), 3)})
        self.events.append(record)
        if self.echo:
            self.stream.write(json.dumps(record) + "\n")
            self.stream.flush()
        return record

    def setup(self, **setup: Any) -> None:
        """How the run trains (processes, device, dtype policy, attention), before any model is loaded."""
        self.emit("setup", **setup)

    def data_stats(self, stats: dict[str, int]) -> None:
        """What the run trains on: rows trained and held out, and rows dropped, truncated or excluded (ties)."""
        self.emit("data_stats", data_stats=stats)

    def started(self, method: str, total_steps: int | None) -> None:
        self.emit("started", method=method, total_steps=total_steps)

    def progress(self, step: int, total: int | None, eta_s: float | None, epoch: float | None = None) -> None:
        self.emit("progress", step=step, total=total, eta_s=eta_s, epoch=epoch)

    def metrics(self, step: int, metrics: dict[str, float]) -> None:
        if metrics:
            self.emit("metrics", step=step, metrics=metrics)

    def checkpoint(self, step: int, path: str | os.PathLike, kind: str, metrics: dict[str, float] | None = None) -> None:
        path = Path(path).resolve()
        self.emit("checkpoint", step=step, path=str(path), kind=kind, size_bytes=dir_size(path), metrics=metrics or {})

    def done(self, result: dict[str, Any]) -> None:
        self.emit("done", result=result)

    def error(self, message: str, traceback: str = "") -> None:
        self.emit("error", message=message, traceback=traceback)

    def of(self, event: str) -> list[dict[str, Any]]:
        """The events of one type emitted so far."""
        return [e for e in self.events if e["event"] == event]


class ProgressTimer:
    """ETA from the mean time per step since the first step seen (resume-aware)."""

    def __init__(self):
        self.start_time: float | None = None
        self.start_step = 0

    def eta(self, step: int, total: int | None) -> float | None:
        now = time.monotonic()
        if self.start_time is None:
            self.start_time, self.start_step = now, step - 1
        done = step - self.start_step
        if not total or done <= 0:
            return None
        return round((now - self.start_time) / done * max(total - step, 0), 2)
