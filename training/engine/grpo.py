"""GRPO: `grpo.num_generations` samples per prompt, each scored by our reward checkpoint and judged against the
others of its group (its score less the group's mean, over their spread), with a KL term to the reference
(TRL GRPOTrainer).

The reward is our reward checkpoint (a callable that formats text the way the reward model was trained), or a
Python reward function passed in (tests, programmatic rewards). With an adapter the reference for the KL term is
the base with adapters off.
"""

from __future__ import annotations

from typing import Any

from .common import (
    base_source,
    callbacks,
    load_model,
    load_tokenizer,
    peft_config,
    stop_token_ids,
    to_dataset,
    train_and_save,
    trl_args,
)
from .config import RunConfig
from .data import prompt_rows, read_jsonl
from .events import Reporter
from .ppo import RewardFn


def train_grpo(cfg: RunConfig, reporter: Reporter, reward_fn: RewardFn | None = None) -> dict[str, Any]:
    from trl import GRPOConfig, GRPOTrainer

    if reward_fn is None:
        if not cfg.reward_checkpoint:
            raise ValueError("reward_checkpoint: is required for grpo")
        from .scoring import reward_scorer

        reward_fn = reward_scorer(cfg)

    source = base_source(cfg)
    tokenizer = load_tokenizer(source)
    model = load_model(cfg, source)
    prompts = [{"prompt": row["prompt"]} for row in prompt_rows(read_jsonl(cfg.dataset))]

    args = trl_args(
        cfg,
        GRPOConfig,
        num_generations=cfg.grpo.num_generations,
        max_completion_length=cfg.grpo.max_new_tokens,
        temperature=cfg.grpo.temperature,
        top_p=cfg.grpo.top_p,
        beta=cfg.grpo.beta,
        num_iterations=cfg.grpo.num_iterations,
        generation_kwargs={"eos_token_id": stop_token_ids(tokenizer)},
    )
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=[reward_fn],
        args=args,
        train_dataset=to_dataset(prompts),
        processing_class=tokenizer,
        peft_config=peft_config(cfg, model),
        callbacks=callbacks(cfg, reporter),
    )
    result = train_and_save(trainer, cfg, reporter)
    result["prompts"] = len(prompts)
    return result
