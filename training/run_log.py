"""A run's log for people: the engine's events in words, one line each.

The run page shows these lines (the run's ``log_tail``): when training started, each epoch, each evaluation, each
checkpoint saved, and how the run ended. Everything the engine printed (the trainer's progress bars, library
warnings, the events as JSON) goes to the run's full log file instead, which the page offers as a download.
"""
from __future__ import annotations

import math
from datetime import datetime

from django.utils import timezone

TAIL_LINES = 200
FULL_LOG_NAME = "engine.log"  # in the run's output directory
METHOD_NAMES = {"reward": "reward model", "dpo": "DPO", "kto": "KTO", "sft": "SFT", "ppo": "PPO", "rloo": "RLOO",
                "grpo": "GRPO"}
KIND_NAMES = {"lora": "LoRA adapter", "prompt_tuning": "prompt-tuning adapter", "full": "full model",
              "merged": "merged model"}
# evaluation figures worth a line, in this order; the rest (runtime, samples per second) stay in the full log
EVAL_KEYS = ("loss", "accuracy", "rewards/accuracies", "rewards/margins", "kl", "reward", "win_rate")


def size_text(n: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"


def number(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


class RunLog:
    """Turns engine events into lines of words as they arrive (``add``); ``text()`` is the latest lines."""

    def __init__(self, lines: list[str] | None = None):
        self.lines: list[str] = list(lines or [])
        self.epoch = 0
        self.total = None
        self.started_at = None
        self.step = 0

    def _say(self, event: dict, text: str) -> None:
        when = event.get("time")
        stamp = datetime.fromtimestamp(when, timezone.get_current_timezone()).strftime("%H:%M:%S") \
            if isinstance(when, (int, float)) else ""
        self.lines.append(f"{stamp} {text}".strip())
        del self.lines[:-TAIL_LINES]

    def add(self, event: dict) -> None:
        kind = event.get("event")
        if kind == "setup":
            n = event.get("world_size") or 1
            dtype = event.get("dtype") if isinstance(event.get("dtype"), dict) else {}
            precision = f", weights {dtype['weights']}, compute {dtype['compute']}" if {"weights", "compute"} <= set(
                dtype) else ""
            self._say(event, f"Set up: {n} process{'es' if n != 1 else ''} on {event.get('device') or 'cpu'}"
                             f"{precision}.")
        elif kind == "data_stats":
            stats = event.get("data_stats") if isinstance(event.get("data_stats"), dict) else {}
            left_out = [f"{stats[k]} {words}" for k, words in (("dropped_too_long", "dropped as too long"),
                                                               ("truncated", "truncated"),
                                                               ("ties_excluded", "ties left out")) if stats.get(k)]
            self._say(event, f"Data: {stats.get('train_rows', 0)} rows to train on, {stats.get('eval_rows', 0)} held "
                             "out" + (f"; {', '.join(left_out)}" if left_out else "") + ".")
        elif kind == "started":
            self.total, self.started_at = event.get("total_steps"), event.get("time")
            method = METHOD_NAMES.get(event.get("method"), event.get("method") or "the run")
            steps = f" for {self.total} steps" if self.total else ""
            self._say(event, f"Training started: {method}{steps}.")
        elif kind == "progress":
            self.step = int(event.get("step") or self.step)
            epoch = event.get("epoch")
            if isinstance(epoch, (int, float)) and math.floor(epoch + 1e-6) > self.epoch:
                self.epoch = math.floor(epoch + 1e-6)
                of = f" of {self.total}" if self.total else ""
                self._say(event, f"Epoch {self.epoch} done at step {self.step}{of}.")
        elif kind == "metrics":
            figures = {k.removeprefix("eval_"): v for k, v in (event.get("metrics") or {}).items()
                       if k.startswith("eval_") and isinstance(v, (int, float))}
            shown = [f"{k} {number(figures[k])}" for k in EVAL_KEYS if k in figures]
            if figures:
                self._say(event, f"Evaluation at step {event.get('step')}: "
                                 + (", ".join(shown) if shown else f"{len(figures)} figures") + ".")
        elif kind == "checkpoint":
            what = KIND_NAMES.get(event.get("kind"), event.get("kind") or "checkpoint")
            size = f", {size_text(int(event['size_bytes']))}" if event.get("size_bytes") else ""
            self._say(event, f"Checkpoint saved at step {event.get('step')} ({what}{size}).")
        elif kind == "done":
            result = event.get("result") or {}
            step = result.get("step") or self.step
            took = ""
            if isinstance(self.started_at, (int, float)) and isinstance(event.get("time"), (int, float)):
                took = f" in {event['time'] - self.started_at:.0f} s"
            self._say(event, f"Finished: {step} steps{took}." if step else f"Finished{took}.")
        elif kind == "error":
            self._say(event, f"Failed: {event.get('message') or 'the engine reported an error'}.")

    def ended(self, *, status: str, reported_error: bool, failure: str = "") -> None:
        """The run's end as the worker saw it, when the events did not say it (a cancel, a crash)."""
        now = {"time": timezone.now().timestamp()}
        if status == "cancelled":
            self._say(now, f"Cancelled at step {self.step}.")
        elif status == "failed" and not reported_error:
            self._say(now, f"Failed: {failure.splitlines()[0] if failure else 'the engine stopped'} "
                           "(the full log has its last output).")

    def text(self) -> str:
        return "\n".join(self.lines)
