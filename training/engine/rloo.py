"""RLOO: REINFORCE with a leave-one-out baseline over `rloo.num_generations` samples per prompt (TRL RLOOTrainer).

Sampling, scoring and the KL reference are shared with GRPO (`groups.py`).
"""

from __future__ import annotations

from typing import Any

from .config import RunConfig
from .events import Reporter
from .groups import train_sampling_groups
from .ppo import RewardFn


def train_rloo(cfg: RunConfig, reporter: Reporter, reward_fn: RewardFn | None = None) -> dict[str, Any]:
    from trl import RLOOConfig, RLOOTrainer

    return train_sampling_groups(cfg, reporter, reward_fn, args_cls=RLOOConfig, trainer_cls=RLOOTrainer)
