"""KTO: learn from unpaired thumbs-up / thumbs-down completions (ratings), or from pairs split into two rows."""

from __future__ import annotations

from typing import Any

from .common import (
    base_source,
    callbacks,
    data_stats,
    load_model,
    load_tokenizer,
    peft_config,
    to_dataset,
    train_and_save,
    trl_args,
)
from .config import RunConfig
from .data import read_jsonl, train_eval_split, unpaired_rows, without_ties
from .events import Reporter


def train_kto(cfg: RunConfig, reporter: Reporter) -> dict[str, Any]:
    from trl import KTOConfig, KTOTrainer

    source = base_source(cfg)
    tokenizer = load_tokenizer(source)
    model = load_model(cfg, source)

    rows, ties = without_ties(read_jsonl(cfg.dataset))  # a tied pair is neither desirable nor undesirable
    rows = unpaired_rows(rows)  # {prompt, completion, label: bool}
    train_rows, eval_rows = train_eval_split(rows, cfg.eval_fraction, cfg.seed)
    if len(eval_rows) < 2:  # KTO's KL term needs a batch of at least 2
        train_rows, eval_rows = rows, []

    args = trl_args(
        cfg,
        KTOConfig,
        max_length=cfg.max_length,
        beta=cfg.kto.beta,
        desirable_weight=cfg.kto.desirable_weight,
        undesirable_weight=cfg.kto.undesirable_weight,
        precompute_ref_log_probs=cfg.kto.precompute_ref_log_probs,
    )
    eval_dataset = to_dataset(eval_rows)
    trainer = KTOTrainer(
        model=model,
        ref_model=None,  # adapters: base with adapters off; full: a frozen copy
        args=args,
        train_dataset=to_dataset(train_rows),
        eval_dataset=eval_dataset,
        processing_class=tokenizer,
        peft_config=peft_config(cfg, model),
        callbacks=callbacks(cfg, reporter),
    )
    datasets = [d for d in (trainer.train_dataset, trainer.eval_dataset) if d is not None]
    kept_train, kept_eval = len(trainer.train_dataset), len(trainer.eval_dataset or [])
    stats = data_stats(
        reporter, train_rows=kept_train, eval_rows=kept_eval, ties_excluded=ties,
        dropped_too_long=len(train_rows) + len(eval_rows) - kept_train - kept_eval,
        truncated=sum(len(p) + len(c) > cfg.max_length for d in datasets
                      for p, c in zip(d["prompt_ids"], d["completion_ids"])),
    )
    result = train_and_save(trainer, cfg, reporter, eval_dataset=trainer.eval_dataset)
    result["train_rows"], result["eval_rows"], result["data_stats"] = kept_train, kept_eval, stats
    result["desirable_rows"] = sum(r["label"] for r in train_rows)
    return result
