"""Merge a LoRA adapter into its base model and save a plain full-model dir (for serving or as a new base).

As an engine method (`{"method": "merge", "output_dir": TARGET, "merge": {"adapter": DIR, "task": "causal"}}`) the
merged model is written beside TARGET and renamed into place once complete, so TARGET is never half-written.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from .common import base_source, load_tokenizer
from .config import RunConfig
from .events import Reporter, dir_size


def merge_adapter(adapter_dir: str, output_dir: str, base: str, task: str = "causal") -> str:
    """Write `base` + adapter, merged, to output_dir; return its path. task: "causal" or "seq_cls" (reward)."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    if task == "seq_cls":
        model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=1)
    else:
        model = AutoModelForCausalLM.from_pretrained(base)
    merged = PeftModel.from_pretrained(model, adapter_dir).merge_and_unload()
    Path(output_dir).mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(output_dir)
    tokenizer_source = adapter_dir if (Path(adapter_dir) / "tokenizer_config.json").is_file() else base
    load_tokenizer(tokenizer_source).save_pretrained(output_dir)
    return str(Path(output_dir).resolve())


def run_merge(cfg: RunConfig, reporter: Reporter) -> dict[str, Any]:
    """The `merge` method: cfg.merge.adapter merged into cfg.base_model, saved as cfg.output_dir."""
    reporter.started("merge", 1)
    out = Path(cfg.output_dir)
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)  # an earlier, interrupted attempt
    merge_adapter(cfg.merge.adapter, str(partial), base=base_source(cfg), task=cfg.merge.task)
    if out.is_dir() and not any(out.iterdir()):
        out.rmdir()
    partial.rename(out)
    reporter.progress(1, 1, 0.0)
    return {"method": "merge", "path": str(out.resolve()), "size_bytes": dir_size(out)}
