"""Reward model: a sequence-classification head scoring (prompt, response), trained on preference pairs."""

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


def train_reward(cfg: RunConfig, reporter: Reporter) -> dict[str, Any]:
    from trl import RewardConfig, RewardTrainer

    source = base_source(cfg)
    tokenizer = load_tokenizer(source)
    model = load_model(cfg, source, task="seq_cls")

    # Rows: {prompt?, chosen, rejected, margin?}. TRL adds the margin to the Bradley-Terry loss when present.
    rows, ties = without_ties(read_jsonl(cfg.dataset))
    rows = preference_rows(rows, use_margin=cfg.reward.use_margin)
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
    # RewardTrainer drops the pairs longer than max_length (it does not truncate them): count what it kept.
    kept_train, kept_eval = len(trainer.train_dataset), len(trainer.eval_dataset or [])
    stats = data_stats(reporter, train_rows=kept_train, eval_rows=kept_eval, ties_excluded=ties,
                       dropped_too_long=len(train_rows) + len(eval_rows) - kept_train - kept_eval)
    result = train_and_save(trainer, cfg, reporter, eval_dataset=trainer.eval_dataset)
    # Held-out pairwise accuracy: how often the chosen response outscores the rejected one.
    result["accuracy"] = result["eval"].get("eval_accuracy")
    result["train_rows"], result["eval_rows"], result["data_stats"] = kept_train, kept_eval, stats
    return result
