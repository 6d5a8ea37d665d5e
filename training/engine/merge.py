"""Merge a LoRA adapter into its base model and save a plain full-model dir (for serving or as a new base)."""

from __future__ import annotations

from pathlib import Path

from .common import adapter_base, load_tokenizer


def merge_adapter(adapter_dir: str, output_dir: str, base: str | None = None, task: str = "causal") -> str:
    """Write base + adapter, merged, to output_dir; return its path. task: "causal" or "seq_cls" (reward)."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    base = base or adapter_base(adapter_dir)
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
