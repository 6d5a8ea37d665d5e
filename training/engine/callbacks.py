"""The transformers/TRL Trainer callback that feeds a Reporter."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from transformers import TrainerCallback

from .events import ProgressTimer, Reporter, float_metrics


class ReporterCallback(TrainerCallback):
    """Forwards a transformers/TRL Trainer's progress, logs and intermediate saves to a Reporter.

    The final checkpoint is reported by the method itself, after evaluation, so that its event carries the
    evaluation metrics; saves before the last step are reported here as they happen.
    """

    def __init__(self, reporter: Reporter, method: str, checkpoint_kind: str,
                 on_save: Callable[[Path], None] | None = None):
        self.reporter = reporter
        self.on_save_hook = on_save  # called on the main process with every checkpoint dir the trainer writes
        self.method = method
        self.checkpoint_kind = checkpoint_kind
        self.timer = ProgressTimer()
        self.last_metrics: dict[str, float] = {}
        self.history: list[dict[str, float]] = []

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            self.reporter.started(self.method, state.max_steps)

    def on_step_end(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            step = state.global_step
            self.reporter.progress(step, state.max_steps, self.timer.eta(step, state.max_steps), state.epoch)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs:
            metrics = float_metrics(logs)
            metrics.pop("epoch", None)
            metrics.pop("step", None)
            self.last_metrics.update(metrics)
            self.history.append({"step": state.global_step, **metrics})
            self.reporter.metrics(state.global_step, metrics)

    def on_save(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        path = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if self.on_save_hook is not None:
            self.on_save_hook(path)
        if state.global_step < state.max_steps:
            self.reporter.checkpoint(state.global_step, path, self.checkpoint_kind, dict(self.last_metrics))
