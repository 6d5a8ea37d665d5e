"""DPO: preference pairs straight into the policy, no reward model.

With an adapter (LoRA, QLoRA, prompt tuning) the reference model is the same base with the adapter switched off,
so no second copy is loaded; a full fine-tune loads a frozen reference copy unless the reference log-probs are
precomputed once up front (`dpo.precompute_ref_log_probs`).
"""

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
from .data import preference_rows, read_jsonl, train_eval_split, without_ties
from .events import Reporter


def train_dpo(cfg: RunConfig, reporter: Reporter) -> dict[str, Any]:
    from trl import DPOConfig, DPOTrainer

    source = base_source(cfg)
    tokenizer = load_tokenizer(source)
    model = load_model(cfg, source)

    rows, ties = without_ties(read_jsonl(cfg.dataset))
    rows = preference_rows(rows, use_margin=False)
    train_rows, eval_rows = train_eval_split(rows, cfg.eval_fraction, cfg.seed)

    loss_type = cfg.dpo.loss_type if isinstance(cfg.dpo.loss_type, list) else [cfg.dpo.loss_type]
    args = trl_args(
        cfg,
        DPOConfig,
        max_length=cfg.max_length,
        beta=cfg.dpo.beta,
        loss_type=loss_type,
        label_smoothing=cfg.dpo.label_smoothing,
        precompute_ref_log_probs=cfg.dpo.precompute_ref_log_probs,
    )
    eval_dataset = to_dataset(eval_rows)
    trainer = DPOTrainer(
        model=model,
        ref_model=None,  # adapters: base with adapters off; full: TRL loads a frozen copy (or uses precomputed)
        args=args,
        train_dataset=to_dataset(train_rows),
        eval_dataset=eval_dataset,
        processing_class=tokenizer,
        peft_config=peft_config(cfg, model),
        callbacks=callbacks(cfg, reporter),
    )
    # DPOTrainer drops the rows whose prompt alone fills max_length and cuts the others to max_length.
    datasets = [d for d in (trainer.train_dataset, trainer.eval_dataset) if d is not None]
    kept_train, kept_eval = len(trainer.train_dataset), len(trainer.eval_dataset or [])
    stats = data_stats(
        reporter, train_rows=kept_train, eval_rows=kept_eval, ties_excluded=ties,
        dropped_too_long=len(train_rows) + len(eval_rows) - kept_train - kept_eval,
        truncated=sum(
            len(p) + max(len(c), len(r)) > cfg.max_length
            for d in datasets for p, c, r in zip(d["prompt_ids"], d["chosen_ids"], d["rejected_ids"])
        ),
    )
    result = train_and_save(trainer, cfg, reporter, eval_dataset=trainer.eval_dataset)
    result["train_rows"], result["eval_rows"], result["data_stats"] = kept_train, kept_eval, stats
    return result
