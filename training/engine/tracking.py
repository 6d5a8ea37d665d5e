"""Experiment tracking: where a run's metrics go besides its events (TensorBoard, MLflow, Weights & Biases).

`report_to: auto` (the default) writes TensorBoard event files into output_dir/tensorboard, and also reports to
MLflow when MLFLOW_TRACKING_URI is set and to W&B when WANDB_API_KEY or WANDB_MODE is (their own settings, read
from the environment: MLFLOW_EXPERIMENT_NAME, WANDB_PROJECT, ...). TRL trainers report through transformers'
own integrations (`TrainingArguments.report_to`); PPO, our own loop, through `Tracker` here.
"""
from __future__ import annotations

import contextlib
import importlib.util
import os
from pathlib import Path

from .config import RunConfig

TENSORBOARD_DIR = "tensorboard"  # in the run's output directory


def report_to(cfg: RunConfig) -> list[str]:
    """The trackers of this run, with TensorBoard's log directory set for transformers' callback."""
    wanted = [cfg.report_to] if isinstance(cfg.report_to, str) else list(cfg.report_to)
    if "none" in wanted:
        return []
    if "auto" in wanted:
        wanted = ["tensorboard"]
        if os.environ.get("MLFLOW_TRACKING_URI"):
            wanted.append("mlflow")
        if (os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_MODE")) and importlib.util.find_spec("wandb"):
            wanted.append("wandb")
    if "tensorboard" in wanted:
        os.environ["TENSORBOARD_LOGGING_DIR"] = str(tensorboard_dir(cfg))
    return wanted


def tensorboard_dir(cfg: RunConfig) -> Path:
    return Path(cfg.output_dir) / TENSORBOARD_DIR


def run_name(cfg: RunConfig) -> str:
    """How the run is named in MLflow and W&B: its method and its output directory's name (e.g. "dpo run-42")."""
    return f"{cfg.method} {Path(cfg.output_dir).name}"


@contextlib.contextmanager
def mlflow_run(cfg: RunConfig, main_process: bool = True):
    """One MLflow run around a TRL trainer's training and evaluation (transformers' callback would end its own run
    at the end of training and put the evaluation in a second one)."""
    if not main_process or "mlflow" not in report_to(cfg):
        yield
        return
    import mlflow

    if os.environ.get("MLFLOW_EXPERIMENT_NAME"):
        mlflow.set_experiment(os.environ["MLFLOW_EXPERIMENT_NAME"])
    with mlflow.start_run(run_name=run_name(cfg)):
        yield


class Tracker:
    """Metrics of a loop of our own (PPO) to the run's trackers, on the main process; close() at the end."""

    def __init__(self, cfg: RunConfig, enabled: bool = True):
        self.writers = []
        names = report_to(cfg) if enabled else []
        if "tensorboard" in names:
            from torch.utils.tensorboard import SummaryWriter

            writer = SummaryWriter(log_dir=str(tensorboard_dir(cfg)))
            self.writers.append(("tensorboard", writer))
        if "mlflow" in names:
            import mlflow

            if os.environ.get("MLFLOW_EXPERIMENT_NAME"):
                mlflow.set_experiment(os.environ["MLFLOW_EXPERIMENT_NAME"])
            self.writers.append(("mlflow", mlflow.start_run(run_name=run_name(cfg))))
            mlflow.log_params({k: v for k, v in cfg.to_dict().items() if not isinstance(v, dict)})
        if "wandb" in names:
            import wandb

            self.writers.append(("wandb", wandb.init(name=run_name(cfg), config=cfg.to_dict())))
        self.names = [name for name, _ in self.writers]

    def log(self, step: int, metrics: dict[str, float]) -> None:
        for name, writer in self.writers:
            if name == "tensorboard":
                for key, value in metrics.items():
                    writer.add_scalar(f"train/{key}", value, step)
            elif name == "mlflow":
                import mlflow

                mlflow.log_metrics({key.replace("/", "_"): value for key, value in metrics.items()}, step=step)
            else:
                writer.log({f"train/{key}": value for key, value in metrics.items()}, step=step)

    def close(self) -> None:
        for name, writer in self.writers:
            if name == "tensorboard":
                writer.close()
            elif name == "mlflow":
                import mlflow

                mlflow.end_run()
            else:
                writer.finish()
