"""`python -m training.engine CONFIG.json`: run one method from a JSON config, reporting JSON lines on stdout.

Parsing is kept apart from `main(cfg)`, so the same code runs by hand, from a Celery worker's subprocess, and
under `accelerate launch -m training.engine CONFIG.json` (only the main process reports). Exit status: 0 on
success, 1 on a failed run (an "error" event says why), 2 on a bad config.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
import warnings
from typing import Any

# Before anything imports torch/transformers: offline-friendly, quiet defaults (callers may override).
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
logging.getLogger("bitsandbytes").setLevel(logging.ERROR)  # "Failed to load CPU gemm_4bit_forward ..." is harmless
warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)

from .config import RunConfig  # noqa: E402  (light: no torch)
from .events import Reporter  # noqa: E402

METHOD_FUNCTIONS = {
    "reward": ("training.engine.reward", "train_reward"),
    "dpo": ("training.engine.dpo", "train_dpo"),
    "kto": ("training.engine.kto", "train_kto"),
    "sft": ("training.engine.sft", "train_sft"),
    "ppo": ("training.engine.ppo", "train_ppo"),
    "rloo": ("training.engine.rloo", "train_rloo"),
    "grpo": ("training.engine.grpo", "train_grpo"),
    "generate": ("training.engine.generate", "train_generate"),
    "evaluate": ("training.engine.evaluate", "train_evaluate"),
    "merge": ("training.engine.merge", "run_merge"),
    "score": ("training.engine.scoring", "run_score"),
}


def is_main_process() -> bool:
    return os.environ.get("RANK", "0") == "0" and os.environ.get("LOCAL_RANK", "0") == "0"


def main(cfg: RunConfig, reporter: Reporter | None = None) -> dict[str, Any]:
    """Run cfg.method; return its result (also reported as the "done" event)."""
    import importlib

    import torch

    # Threads first: with the default (all cores) a contended CPU trains 15-50x slower.
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    elif not torch.cuda.is_available():
        torch.set_num_threads(1)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_warning()
    hf_logging.disable_progress_bar()

    from .common import run_setup, setup_runtime

    reporter = reporter or Reporter(echo=is_main_process())
    setup_runtime(cfg)
    reporter.setup(**run_setup(cfg))
    module_name, function_name = METHOD_FUNCTIONS[cfg.method]
    train = getattr(importlib.import_module(module_name), function_name)
    result = train(cfg, reporter)
    reporter.done(result)
    return result


def run(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.engine", description=__doc__.splitlines()[0])
    parser.add_argument("config", help="path to the run's JSON config")
    args = parser.parse_args(argv)

    # stdout carries only our JSON lines: keep a handle on the real stdout for the reporter, then point fd 1
    # (Python prints and C-level writes alike) at stderr.
    events_stream = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
    sys.stdout.flush()
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    reporter = Reporter(stream=events_stream, echo=is_main_process())

    try:
        cfg = RunConfig.from_json(args.config)
    except (OSError, ValueError, TypeError) as exc:
        reporter.error(f"invalid config: {exc}", traceback.format_exc())
        return 2
    try:
        main(cfg, reporter)
    except BaseException as exc:  # noqa: BLE001 - report everything, including KeyboardInterrupt/SIGINT
        reporter.error(f"{type(exc).__name__}: {exc}", traceback.format_exc())
        return 1
    return 0
