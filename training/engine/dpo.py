"""DPO: preference pairs straight into the policy, no reward model.

With an adapter (LoRA, QLoRA, prompt tuning) the reference model is the same base with the adapter switched off,
so no second copy is loaded; a full fine-tune loads a frozen reference copy unless the reference log-probs are
precomputed once up front (`dpo.precompute_ref_log_probs`).
"""

from __future__ import annotations

from typing import Any

from .common import base_source, callbacks, load_model, load_tokenizer, peft_config, to_dataset, train_and_save, trl_args
from .config import RunConfig
from .data import preference_rows, read_jsonl, train_eval_split
from .events import Reporter


def train_dpo(cfg: RunConfig, reporter: Reporter) -> dict[str, Any]:
    from trl import DPOConfig, DPOTrainer

    source = base_source(cfg)
    tokenizer = load_tokenizer(source)
    model = load_model(cfg, source)

    rows = preference_rows(read_jsonl(cfg.dataset), use_margin=False)
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
    result = train_and_save(trainer, cfg, reporter, eval_dataset=trainer.eval_dataset)
    result["train_rows"], result["eval_rows"] = len(train_rows), len(eval_rows)
    return result
