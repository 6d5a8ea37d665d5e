"""Scoring (prompt, response) pairs with a reward checkpoint written by the `reward` method.

A reward checkpoint is either a LoRA SEQ_CLS adapter dir (adapter_config.json + the trained `score` head) or a
full sequence-classification model dir. Text is formatted the way RewardTrainer formatted it in training:
conversational prompts through the chat template, plain-text prompts as prompt + response + eos.

As an engine method (`score`) it scores a file of (prompt, completion) rows for the AI judge and active learning.

A reward function here is any callable `fn(prompts, completions, completion_ids=None, **kw) -> list[float]` (TRL's
reward-function signature), so a programmatic reward and a reward model are interchangeable.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from .checkpoints import adapter_base
from .common import base_source, device, is_adapter_dir, load_tokenizer
from .config import RunConfig
from .data import is_messages, read_jsonl
from .events import ProgressTimer, Reporter
from .tiny import resolve_model_source


def load_reward_model(checkpoint: str | Path, base: str | None = None, dtype=None):
    """(model, tokenizer) for a reward checkpoint; adapters are merged into their base for fast inference.

    `base`: the adapter's base as `from_pretrained` takes it (see `reward_base`); by default what the adapter names.
    """
    from transformers import AutoModelForSequenceClassification

    checkpoint = str(checkpoint)
    kwargs = {"dtype": dtype} if dtype is not None else {}
    if is_adapter_dir(checkpoint):
        from peft import PeftModel

        base = base or adapter_base(checkpoint)
        model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=1, **kwargs)
        model = PeftModel.from_pretrained(model, checkpoint).merge_and_unload()
    else:
        model = AutoModelForSequenceClassification.from_pretrained(checkpoint, num_labels=1, **kwargs)
    tokenizer_source = checkpoint if (Path(checkpoint) / "tokenizer_config.json").is_file() else base
    tokenizer = load_tokenizer(tokenizer_source)
    model.config.pad_token_id = tokenizer.pad_token_id
    model.eval()
    return model, tokenizer


class RewardModelScorer:
    """Callable reward from a reward checkpoint: one float per (prompt, completion)."""

    __name__ = "reward_model"  # TRL logs callables by name

    def __init__(self, checkpoint: str | Path, base: str | None = None, max_length: int = 512, batch_size: int = 16):
        self.model, self.tokenizer = load_reward_model(checkpoint, base)
        self.max_length = max_length
        self.batch_size = batch_size
        self.device = device()  # this rank's own GPU under accelerate launch
        self.model.to(self.device)

    def token_ids(self, prompt, completion) -> list[int]:
        if is_messages(prompt):
            reply = completion if is_messages(completion) else [{"role": "assistant", "content": completion}]
            ids = self.tokenizer.apply_chat_template(list(prompt) + list(reply), tokenize=True, return_dict=True)
            ids = ids["input_ids"]
        else:
            text = completion if isinstance(completion, str) else completion[-1]["content"]
            ids = self.tokenizer(prompt + text + (self.tokenizer.eos_token or ""))["input_ids"]
        return ids[-self.max_length :]  # keep the end: the score is read at the last token

    @torch.no_grad()
    def __call__(self, prompts, completions, completion_ids=None, **kwargs) -> list[float]:
        scores: list[float] = []
        for start in range(0, len(prompts), self.batch_size):
            batch = [
                self.token_ids(p, c)
                for p, c in zip(prompts[start : start + self.batch_size], completions[start : start + self.batch_size])
            ]
            width = max(len(ids) for ids in batch)
            pad = self.tokenizer.pad_token_id
            input_ids = torch.tensor([ids + [pad] * (width - len(ids)) for ids in batch], device=self.device)
            mask = torch.tensor([[1] * len(ids) + [0] * (width - len(ids)) for ids in batch], device=self.device)
            logits = self.model(input_ids=input_ids, attention_mask=mask).logits[:, 0]
            scores.extend(logits.float().cpu().tolist())
        return scores


def reward_base(cfg: RunConfig) -> str | None:
    """The base model of cfg.reward_checkpoint when it is an adapter: `reward_base_model` (the server knows it),
    else what the checkpoint names, with the run's own base for a checkpoint trained on a local directory."""
    if not is_adapter_dir(cfg.reward_checkpoint):
        return None
    if cfg.reward_base_model:
        return resolve_model_source(cfg.reward_base_model, cfg.data_dir)
    return adapter_base(cfg.reward_checkpoint, data_dir=cfg.data_dir, default=base_source(cfg))


def reward_scorer(cfg: RunConfig, batch_size: int = 16) -> RewardModelScorer:
    """The run's reward checkpoint as a reward function."""
    return RewardModelScorer(cfg.reward_checkpoint, base=reward_base(cfg), max_length=cfg.max_length,
                             batch_size=batch_size)


def run_score(cfg: RunConfig, reporter: Reporter) -> dict[str, Any]:
    """The `score` method: one `{"key", "score"}` line in output_dir/scores.jsonl per `{"key", "prompt", "completion"}`
    row of cfg.dataset, in batches of cfg.batch_size; the file is written under a temporary name and renamed when
    complete."""
    rows = read_jsonl(cfg.dataset)
    scorer = reward_scorer(cfg, batch_size=cfg.batch_size)
    total = max(1, -(-len(rows) // cfg.batch_size))
    reporter.started("score", total)
    timer = ProgressTimer()
    out = Path(cfg.output_dir) / "scores.jsonl"
    partial = out.with_name(out.name + ".partial")
    with open(partial, "w", encoding="utf-8") as f:
        for step in range(total):
            chunk = rows[step * cfg.batch_size : (step + 1) * cfg.batch_size]
            scores = scorer([r["prompt"] for r in chunk], [r["completion"] for r in chunk]) if chunk else []
            for row, value in zip(chunk, scores):
                f.write(json.dumps({"key": row["key"], "score": float(value)}) + "\n")
            reporter.progress(step + 1, total, timer.eta(step + 1, total))
    partial.replace(out)
    return {"method": "score", "scored": len(rows), "path": str(out.resolve())}
