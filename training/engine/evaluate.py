"""Evaluation: a reward checkpoint's accuracy on held-out pairs, or a policy's win-rate over a baseline.

Both come with a 95% confidence interval (Wilson score interval, or a percentile bootstrap). Per-item rows go to
output_dir/evaluation.jsonl; the summary is the run's result.
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import Any

import numpy as np

from .config import RunConfig
from .data import as_messages, preference_rows, prompt_rows, read_jsonl, without_ties
from .events import Reporter

Z95 = 1.959963984540054


def wilson_interval(successes: float, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a proportion (successes may be fractional: ties count half)."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1 + z * z / n
    center = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, center - half), min(1.0, center + half)


def bootstrap_interval(outcomes: list[float], samples: int = 2000, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap 95% interval of the mean of per-item outcomes."""
    if not outcomes:
        return 0.0, 1.0
    rng = np.random.default_rng(seed)
    values = np.asarray(outcomes, dtype=float)
    means = rng.choice(values, size=(samples, len(values)), replace=True).mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def interval(outcomes: list[float], cfg: RunConfig) -> tuple[float, float]:
    if cfg.evaluate.ci == "bootstrap":
        return bootstrap_interval(outcomes, cfg.evaluate.bootstrap_samples, cfg.seed)
    return wilson_interval(sum(outcomes), len(outcomes))


def train_evaluate(cfg: RunConfig, reporter: Reporter, reward_fn=None) -> dict[str, Any]:
    """Dispatch on evaluate.kind; `reward_fn` replaces the reward checkpoint (tests)."""
    if reward_fn is None:
        from .scoring import reward_scorer

        reward_fn = reward_scorer(cfg)
    if cfg.evaluate.kind == "reward_accuracy":
        return reward_accuracy(cfg, reporter, reward_fn)
    return win_rate(cfg, reporter, reward_fn)


def reward_accuracy(cfg: RunConfig, reporter: Reporter, reward_fn) -> dict[str, Any]:
    rows, ties = without_ties(read_jsonl(cfg.dataset))  # a tie has no right answer
    rows = preference_rows(rows, use_margin=False)
    reporter.started("evaluate", 1)
    prompts = [r.get("prompt", "") for r in rows]
    chosen = reward_fn(prompts=prompts, completions=[r["chosen"] for r in rows])
    rejected = reward_fn(prompts=prompts, completions=[r["rejected"] for r in rows])
    outcomes = [1.0 if c > r else 0.5 if c == r else 0.0 for c, r in zip(chosen, rejected)]
    _write_rows(cfg, [{"index": i, "chosen_score": c, "rejected_score": r, "correct": o}
                      for i, (c, r, o) in enumerate(zip(chosen, rejected, outcomes))])
    low, high = interval(outcomes, cfg)
    result = {
        "method": "evaluate", "kind": "reward_accuracy", "n": len(rows), "ties_excluded": ties,
        "accuracy": sum(outcomes) / len(outcomes), "ci95": [low, high], "ci_method": cfg.evaluate.ci,
        "mean_margin": float(np.mean(np.asarray(chosen) - np.asarray(rejected))),
    }
    reporter.progress(1, 1, 0.0)
    reporter.metrics(1, {"accuracy": result["accuracy"], "ci95_low": low, "ci95_high": high})
    return result


def win_rate(cfg: RunConfig, reporter: Reporter, reward_fn) -> dict[str, Any]:
    from .generate import load_for_generation, sample

    e = cfg.evaluate
    rows = prompt_rows(read_jsonl(cfg.dataset))[: e.max_prompts]
    prompts = [r["prompt"] for r in rows]
    reporter.started("evaluate", 2)
    responses = {}
    for step, (name, checkpoint) in enumerate((("policy", e.policy_checkpoint), ("baseline", e.baseline_checkpoint)), 1):
        model, tokenizer = load_for_generation(checkpoint, cfg)
        texts = sample(model, tokenizer, prompts, n=1, temperature=e.temperature, top_p=e.top_p,
                       max_new_tokens=e.max_new_tokens, batch_size=cfg.batch_size, seed=cfg.seed)
        responses[name] = [t[0] for t in texts]
        reporter.progress(step, 2, None)
        del model
    policy_scores = reward_fn(prompts=prompts, completions=responses["policy"])
    baseline_scores = reward_fn(prompts=prompts, completions=responses["baseline"])
    outcomes = [1.0 if p > b else 0.5 if p == b else 0.0 for p, b in zip(policy_scores, baseline_scores)]
    _write_rows(cfg, [
        {"prompt_id": r["prompt_id"], "messages": as_messages(r["prompt"], "user"), "policy": pr, "baseline": br,
         "policy_score": ps, "baseline_score": bs, "outcome": o}
        for r, pr, br, ps, bs, o in zip(rows, responses["policy"], responses["baseline"], policy_scores,
                                        baseline_scores, outcomes)
    ])
    low, high = interval(outcomes, cfg)
    result = {
        "method": "evaluate", "kind": "win_rate", "n": len(outcomes),
        "win_rate": sum(outcomes) / max(len(outcomes), 1), "ci95": [low, high], "ci_method": e.ci,
        "wins": sum(o == 1.0 for o in outcomes), "ties": sum(o == 0.5 for o in outcomes),
        "losses": sum(o == 0.0 for o in outcomes),
        "policy_reward_mean": float(np.mean(policy_scores)), "baseline_reward_mean": float(np.mean(baseline_scores)),
        "policy_checkpoint": e.policy_checkpoint, "baseline_checkpoint": e.baseline_checkpoint,
    }
    reporter.metrics(2, {"win_rate": result["win_rate"], "ci95_low": low, "ci95_high": high})
    return result


def _write_rows(cfg: RunConfig, rows: list[dict]) -> None:
    with open(Path(cfg.output_dir) / "evaluation.jsonl", "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
