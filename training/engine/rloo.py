"""RLOO: REINFORCE with a leave-one-out baseline over `rloo.num_generations` samples per prompt (TRL RLOOTrainer).

The reward is our reward checkpoint (wrapped as a callable that formats text the way the reward model was
trained), or a Python reward function passed in (tests, programmatic rewards). With an adapter the reference for
the KL term is the base with adapters off.
"""

from __future__ import annotations

from typing import Any

from .common import base_source, callbacks, load_model, load_tokenizer, peft_config, stop_token_ids, to_dataset, train_and_save, trl_args
from .config import RunConfig
from .data import prompt_rows, read_jsonl
from .events import Reporter
from .ppo import RewardFn


def train_rloo(cfg: RunConfig, reporter: Reporter, reward_fn: RewardFn | None = None) -> dict[str, Any]:
    from trl import RLOOConfig, RLOOTrainer

    if reward_fn is None:
        if not cfg.reward_checkpoint:
            raise ValueError("reward_checkpoint: is required for rloo")
        from .scoring import reward_scorer

        reward_fn = reward_scorer(cfg)

    source = base_source(cfg)
    tokenizer = load_tokenizer(source)
    model = load_model(cfg, source)
    prompts = [{"prompt": row["prompt"]} for row in prompt_rows(read_jsonl(cfg.dataset))]

    args = trl_args(
        cfg,
        RLOOConfig,
        num_generations=cfg.rloo.num_generations,
        max_completion_length=cfg.rloo.max_new_tokens,
        temperature=cfg.rloo.temperature,
        top_p=cfg.rloo.top_p,
        beta=cfg.rloo.beta,
        num_iterations=cfg.rloo.num_iterations,
        generation_kwargs={"eos_token_id": stop_token_ids(tokenizer)},
    )
    trainer = RLOOTrainer(
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
