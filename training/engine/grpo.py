"""GRPO: `grpo.num_generations` samples per prompt, each scored by our reward checkpoint and judged against the
others of its group (its score less the group's mean, over their spread), with a KL term to the reference
(TRL GRPOTrainer).

Sampling, scoring and the KL reference are shared with RLOO (`groups.py`).
"""

from __future__ import annotations

from typing import Any

from .config import RunConfig
from .events import Reporter
from .groups import train_sampling_groups
from .ppo import RewardFn


def train_grpo(cfg: RunConfig, reporter: Reporter, reward_fn: RewardFn | None = None) -> dict[str, Any]:
    from trl import GRPOConfig, GRPOTrainer

    return train_sampling_groups(cfg, reporter, reward_fn, args_cls=GRPOConfig, trainer_cls=GRPOTrainer)
