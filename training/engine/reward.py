"""Reward model: a sequence-classification head scoring (prompt, response), trained on preference pairs."""

from __future__ import annotations

from typing import Any

from .common import (
    base_source,
    callbacks,
    keep_heads_in_fp32,
    load_model,
    load_tokenizer,
    peft_config,
    to_dataset,
    train_and_save,
    trl_args,
)
from .config import RunConfig
from .data import preference_rows, read_jsonl, train_eval_split
from .events import Reporter


def train_reward(cfg: RunConfig, reporter: Reporter) -> dict[str, Any]:
    from trl import RewardConfig, RewardTrainer

    source = base_source(cfg)
    tokenizer = load_tokenizer(source)
    model = load_model(cfg, source, task="seq_cls")

    # Rows: {prompt?, chosen, rejected, margin?}. TRL adds the margin to the Bradley-Terry loss when present.
    rows = preference_rows(read_jsonl(cfg.dataset), use_margin=cfg.reward.use_margin)
    train_rows, eval_rows = train_eval_split(rows, cfg.eval_fraction, cfg.seed)

    args = trl_args(
        cfg,
        RewardConfig,
        max_length=cfg.max_length,
        center_rewards_coefficient=cfg.reward.center_rewards_coefficient,
    )
    eval_dataset = to_dataset(eval_rows)
    trainer = RewardTrainer(
        model=model,
        args=args,
        train_dataset=to_dataset(train_rows),
        eval_dataset=eval_dataset,
        processing_class=tokenizer,
        peft_config=peft_config(cfg, model, task="seq_cls"),  # SEQ_CLS: the `score` head is trained and saved too
        callbacks=callbacks(cfg, reporter),
    )
    if cfg.adapter == "qlora":
        keep_heads_in_fp32(trainer.model)
    result = train_and_save(trainer, cfg, reporter, eval_dataset=trainer.eval_dataset)
    # Held-out pairwise accuracy: how often the chosen response outscores the rejected one.
    result["accuracy"] = result["eval"].get("eval_accuracy")
    result["train_rows"], result["eval_rows"] = len(train_rows), len(eval_rows)
    return result
