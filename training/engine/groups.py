"""What RLOO and GRPO share: TRL trainers that sample `num_generations` completions per prompt, score each with our
reward checkpoint (or a reward function passed in) and judge it against the others of its group.

The reward is our reward checkpoint (a callable that formats text the way the reward model was trained), or a
Python reward function passed in (tests, programmatic rewards). With an adapter the reference for the KL term is
the base with adapters off.
"""

from __future__ import annotations

from typing import Any

from .common import base_source, callbacks, load_model, load_tokenizer, peft_config, stop_token_ids, to_dataset, train_and_save, trl_args
from .config import RunConfig
from .data import prompt_rows, read_jsonl
from .events import Reporter
from .ppo import RewardFn


def train_sampling_groups(cfg: RunConfig, reporter: Reporter, reward_fn: RewardFn | None, *, args_cls,
                          trainer_cls) -> dict[str, Any]:
    """Train `cfg.method` (rloo or grpo) with its TRL config and trainer classes; settings from its section."""
    section = getattr(cfg, cfg.method)
    if reward_fn is None:
        if not cfg.reward_checkpoint:
            raise ValueError(f"reward_checkpoint: is required for {cfg.method}")
        from .scoring import reward_scorer

        reward_fn = reward_scorer(cfg)

    source = base_source(cfg)
    tokenizer = load_tokenizer(source)
    model = load_model(cfg, source)
    prompts = [{"prompt": row["prompt"]} for row in prompt_rows(read_jsonl(cfg.dataset))]

    args = trl_args(
        cfg,
        args_cls,
        num_generations=section.num_generations,
        max_completion_length=section.max_new_tokens,
        temperature=section.temperature,
        top_p=section.top_p,
        beta=section.beta,
        num_iterations=section.num_iterations,
        generation_kwargs={"eos_token_id": stop_token_ids(tokenizer)},
    )
    trainer = trainer_cls(
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
