"""PPO with a KL penalty to the reference model (InstructGPT-style RLHF), on transformers + peft.

TRL 1.16 no longer ships a PPO trainer, so the loop is written out here, compactly. One update is three steps,
each a function read top to bottom in `train_ppo`:

  1. rollout          sample a response for each of `ppo.rollout_batch_size` prompts from the policy
  2. score_responses  the reward checkpoint's score for (prompt, response), or a Python reward function's,
                      less the missing-EOS penalty
  3. ppo_update       per-token log-probs of the policy and of the reference, values from the value head;
                      rewards = -kl_coef * (logp - ref_logp) per token plus the score on the last token;
                      advantages and returns by GAE (`compute_gae`), whitened; then `ppo.ppo_epochs` passes over
                      minibatches of the clipped policy loss + vf_coef * the clipped value loss

Logits are computed for the response positions only (the decoder's hidden states there, then the vocabulary
projection), and the reference pass has no value head. An optimizer step follows every `grad_accum` minibatches,
on `lr_scheduler` with `warmup_ratio`; `kl_coef` is fixed, or adaptive with `ppo.kl_target`.

Under `accelerate launch` (a run's `gpus` > 1) the loop runs through Accelerate: each rank rolls out its own share
of the prompts and scores them with its own reward model on its own device, the update's gradients are
all-reduced (DDP), and rank 0 writes the one checkpoint.

With LoRA/QLoRA the policy, the reference and the value model share ONE frozen base: the reference is the base
with adapters off (`with policy.disable_adapter():`), and the value head is a small nn.Linear on the policy's last
hidden state, saved beside the adapter as value_head.safetensors. A full fine-tune loads a frozen reference copy.

A checkpoint dir holds the adapter (or full model), the tokenizer and base_model.json for inference, and
value_head.safetensors and ppo_state.pt (optimizer, scheduler, step, KL coefficient) for resuming.
"""

from __future__ import annotations

import contextlib
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from .common import (
    TORCH_DTYPES,
    base_source,
    load_model,
    load_tokenizer,
    peft_config,
    precision,
    replicas_in_sync,
    run_setup,
    stop_token_ids,
    trainable_in_fp32,
)
from .checkpoints import make_self_contained
from .config import RunConfig
from .data import is_messages, prompt_rows, read_jsonl
from .events import ProgressTimer, Reporter
from .tracking import Tracker

RewardFn = Callable[..., list[float]]


# ---------------------------------------------------------------- the maths, as small pure functions


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (x * mask).sum() / mask.sum().clamp(min=1)


def whiten(x: torch.Tensor, mask: torch.Tensor | None = None, shift_mean: bool = True) -> torch.Tensor:
    """(x - mean) / std over the masked entries, with the unbiased variance; optionally keep the mean."""
    if mask is None:
        mask = torch.ones_like(x)
    mean = masked_mean(x, mask)
    n = mask.sum()
    var = masked_mean((x - mean) ** 2, mask) * n / (n - 1).clamp(min=1)
    out = (x - mean) * torch.rsqrt(var + 1e-8)
    if not shift_mean:
        out = out + mean
    return out * mask


def compute_gae(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over response tokens; returns (advantages, returns), both [B, T].

    delta_t = r_t + gamma * V_{t+1} - V_t;  A_t = delta_t + gamma * lam * A_{t+1};  returns = A + V.
    Positions where mask is 0 (after the response ended) count as terminal: reward 0, value 0.
    """
    rewards, values = rewards * mask, values * mask
    advantages = torch.zeros_like(rewards)
    last = torch.zeros_like(rewards[:, 0])
    T = rewards.shape[1]
    for t in reversed(range(T)):
        next_value = values[:, t + 1] if t + 1 < T else torch.zeros_like(last)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        last = delta + gamma * lam * last
        advantages[:, t] = last
    advantages = advantages * mask
    return advantages, (advantages + values) * mask


def policy_loss(
    logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor, cliprange: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """PPO clipped surrogate: mean over tokens of max(-A * r, -A * clip(r, 1-eps, 1+eps)); returns (loss, clipfrac)."""
    ratio = torch.exp(logprobs - old_logprobs)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - cliprange, 1.0 + cliprange)
    loss = masked_mean(torch.max(unclipped, clipped), mask)
    clipfrac = masked_mean((clipped > unclipped).float(), mask)
    return loss, clipfrac


def value_loss(
    values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor, cliprange_value: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Clipped value loss: 0.5 * mean of max((V - R)^2, (V_clipped - R)^2); returns (loss, clipfrac)."""
    clipped_values = old_values + torch.clamp(values - old_values, -cliprange_value, cliprange_value)
    unclipped_error = (values - returns) ** 2
    clipped_error = (clipped_values - returns) ** 2
    loss = 0.5 * masked_mean(torch.max(unclipped_error, clipped_error), mask)
    clipfrac = masked_mean((clipped_error > unclipped_error).float(), mask)
    return loss, clipfrac


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    logp = F.log_softmax(logits, dim=-1)
    return -(logp.exp() * logp).sum(-1)


# ---------------------------------------------------------------- the model pieces


class PolicyWithValue(nn.Module):
    """The policy (a causal LM, usually a PeftModel) and a linear value head on its last hidden state."""

    def __init__(self, policy: nn.Module, hidden_size: int):
        super().__init__()
        self.policy = policy
        self.value_head = nn.Linear(hidden_size, 1)
        nn.init.normal_(self.value_head.weight, std=1.0 / math.sqrt(hidden_size + 1))
        nn.init.zeros_(self.value_head.bias)

    def forward(self, input_ids, attention_mask, context_length: int, temperature: float):
        """Logits (temperature-scaled) and values for the response positions only: [B, T, V] and [B, T]."""
        hidden = response_hidden_states(self.policy, input_ids, attention_mask, context_length)
        logits = lm_head_logits(self.policy, hidden) / temperature
        values = self.value_head(hidden.to(self.value_head.weight.dtype)).squeeze(-1).float()
        return logits, values


def response_hidden_states(model, input_ids, attention_mask, context_length: int) -> torch.Tensor:
    """The decoder's last hidden states at the positions that predict the response tokens, [B, T, H].

    Position i predicts token i+1, so the response is predicted from positions context_length-1 .. -2. Only the
    decoder runs here (no per-layer hidden states kept, no logits over the prompt): the vocabulary projection is
    applied to these T positions alone by `lm_head_logits`.
    """
    lm = model.get_base_model() if hasattr(model, "get_base_model") else model
    out = lm.get_decoder()(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids(attention_mask))
    return out.last_hidden_state[:, context_length - 1 : -1]


def lm_head_logits(model, hidden: torch.Tensor) -> torch.Tensor:
    """The causal LM's output projection on `hidden`, as fp32 logits (with the final soft-capping of models that
    have one, e.g. Gemma 2)."""
    lm = model.get_base_model() if hasattr(model, "get_base_model") else model
    logits = lm.get_output_embeddings()(hidden).float()
    softcap = getattr(lm.config.get_text_config(), "final_logit_softcapping", None)
    if softcap:
        logits = torch.tanh(logits / softcap) * softcap
    return logits


def response_logits(model, input_ids, attention_mask, context_length: int, temperature: float) -> torch.Tensor:
    """Temperature-scaled logits of the response positions only, [B, T, V]."""
    return lm_head_logits(model, response_hidden_states(model, input_ids, attention_mask, context_length)) / temperature


def position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions that skip left padding, as generate() uses them."""
    return (attention_mask.cumsum(-1) - 1).clamp(min=0)


def token_logprobs(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    return torch.gather(F.log_softmax(logits, dim=-1), 2, tokens.unsqueeze(-1)).squeeze(-1)


def make_optimizer(cfg: RunConfig, params) -> torch.optim.Optimizer:
    if cfg.optim in ("adamw_torch", "adamw_torch_fused"):
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optim == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr)
    import bitsandbytes as bnb

    optimizers = {
        "adamw_8bit": bnb.optim.AdamW8bit,
        "adamw_bnb_8bit": bnb.optim.AdamW8bit,
        "paged_adamw_8bit": bnb.optim.PagedAdamW8bit,
        "paged_adamw_32bit": bnb.optim.PagedAdamW32bit,
        "lion_8bit": bnb.optim.Lion8bit,
    }
    if cfg.optim not in optimizers:
        raise ValueError(f"optim: {cfg.optim!r} is not supported by ppo")
    return optimizers[cfg.optim](params, lr=cfg.lr, weight_decay=cfg.weight_decay)


# ---------------------------------------------------------------- rollouts


@dataclass
class Rollout:
    """One batch of sampled responses and what the update needs to know about them."""

    prompts: list
    queries: torch.Tensor  # [B, P] prompt ids, left-padded
    query_mask: torch.Tensor
    responses: torch.Tensor  # [B, T] response ids, pad after the stop token
    mask: torch.Tensor  # [B, T] 1.0 up to and including the stop token
    ended: torch.Tensor  # [B] the response ended its turn (a stop token) before max_new_tokens

    @property
    def context_length(self) -> int:
        return self.queries.shape[1]

    @property
    def query_response(self) -> torch.Tensor:
        return torch.cat([self.queries, self.responses], dim=1)

    @property
    def attention_mask(self) -> torch.Tensor:
        return torch.cat([self.query_mask, self.mask.long()], dim=1)

    def select(self, idx: torch.Tensor) -> Rollout:
        """The rows `idx` (prompt padding and response length kept, so positions line up with the whole batch)."""
        return Rollout([self.prompts[i] for i in idx.tolist()], self.queries[idx], self.query_mask[idx],
                       self.responses[idx], self.mask[idx], self.ended[idx])


def encode_prompt(tokenizer, prompt) -> list[int]:
    if is_messages(prompt):
        return tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True, return_dict=True)[
            "input_ids"
        ]
    return tokenizer(prompt)["input_ids"]


def left_pad(sequences: list[list[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in sequences)
    ids = torch.tensor([[pad_id] * (width - len(s)) + s for s in sequences], device=device)
    mask = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in sequences], device=device)
    return ids, mask


def truncate_at_stop(responses: torch.Tensor, stop_ids: list[int], pad_id: int):
    """Mask everything after the first stop token (which is kept); returns (responses, mask, ended)."""
    is_stop = torch.isin(responses, torch.tensor(stop_ids, device=responses.device))
    # Tokens strictly after the first stop token: at least one stop token seen before them.
    after_stop = (is_stop.cumsum(-1) - is_stop.long()) > 0
    mask = (~after_stop).float()
    responses = responses.masked_fill(after_stop, pad_id)
    return responses, mask, is_stop.any(-1)


@torch.no_grad()
def rollout(model: PolicyWithValue, tokenizer, prompts: list, cfg: RunConfig, stop_ids: list[int], device) -> Rollout:
    """Sample one response per prompt from the policy, cut after its first stop token."""
    model.eval()  # generation uses the KV cache, which activation checkpointing turns off in training mode
    queries, query_mask = left_pad([encode_prompt(tokenizer, p) for p in prompts], tokenizer.pad_token_id, device)
    out = model.policy.generate(
        input_ids=queries,
        attention_mask=query_mask,
        do_sample=True,
        temperature=cfg.ppo.temperature,
        top_p=cfg.ppo.top_p,
        top_k=0,
        max_new_tokens=cfg.ppo.max_new_tokens,
        eos_token_id=stop_ids,
        pad_token_id=tokenizer.pad_token_id,
    )
    responses = out[:, queries.shape[1] :]
    if responses.shape[1] == 0:  # every sample stopped at once is impossible: generate emits >= 1 token
        raise RuntimeError("generate returned no tokens")
    responses, response_mask, ended = truncate_at_stop(responses, stop_ids, tokenizer.pad_token_id)
    return Rollout(prompts, queries, query_mask, responses, response_mask, ended)


# ---------------------------------------------------------------- checkpoints


def save_checkpoint(model: PolicyWithValue, tokenizer, state: dict[str, Any], step: int, cfg: RunConfig) -> Path:
    """The adapter (or full model) and tokenizer, for inference; the value head and ppo_state.pt (optimizer,
    scheduler, step, KL coefficient), for resuming."""
    from safetensors.torch import save_file

    path = Path(cfg.output_dir) / f"checkpoint-{step}"
    path.mkdir(parents=True, exist_ok=True)
    model.policy.save_pretrained(path)
    tokenizer.save_pretrained(path)
    save_file({k: v.detach().cpu().contiguous() for k, v in model.value_head.state_dict().items()},
              str(path / "value_head.safetensors"))
    torch.save({"step": step, **state}, path / "ppo_state.pt")
    make_self_contained(path, cfg.base_model, base_source(cfg))
    return path


def load_checkpoint(model: PolicyWithValue, path: str | Path) -> dict[str, Any]:
    """Restore adapter (or full) weights and value head from a checkpoint dir; return its ppo_state.pt."""
    from safetensors.torch import load_file

    path = Path(path)
    if (path / "adapter_model.safetensors").is_file():
        from peft import set_peft_model_state_dict

        set_peft_model_state_dict(model.policy, load_file(str(path / "adapter_model.safetensors")))
    else:
        from transformers import AutoModelForCausalLM

        model.policy.load_state_dict(AutoModelForCausalLM.from_pretrained(path).state_dict())
    model.value_head.load_state_dict(load_file(str(path / "value_head.safetensors")))
    return torch.load(path / "ppo_state.pt", weights_only=False)


# ---------------------------------------------------------------- the run


class KLController:
    """The KL coefficient: fixed, or adaptive when `ppo.kl_target` is set (Ziegler et al. 2019): it moves towards the
    value that keeps the per-response KL near the target, by at most 20% of the error per `ppo.kl_horizon` samples."""

    def __init__(self, value: float, target: float | None, horizon: int):
        self.value, self.target, self.horizon = value, target, horizon

    def update(self, kl: float, samples: int) -> None:
        if self.target is not None:
            error = min(max(kl / self.target - 1, -0.2), 0.2)
            self.value *= 1 + error * samples / self.horizon


def train_ppo(cfg: RunConfig, reporter: Reporter, reward_fn: RewardFn | None = None) -> dict[str, Any]:
    """PPO on the prompts of cfg.dataset; the reward is cfg.reward_checkpoint unless `reward_fn` is given.

    Under `accelerate launch` each process (rank) rolls out its own share of the prompts on its own device and
    scores them with its own reward model; the update's gradients are all-reduced (DDP), so every rank holds the
    same weights; rank 0 saves the one checkpoint. Each update reads top to bottom: sample (`rollout`), score
    (`score_responses`), learn (`ppo_update`).
    """
    from accelerate import Accelerator
    from transformers import get_scheduler

    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    world, rank = accelerator.num_processes, accelerator.process_index
    if reward_fn is None:
        if not cfg.reward_checkpoint:
            raise ValueError("reward_checkpoint: is required for ppo")
        from .scoring import reward_scorer

        reward_fn = reward_scorer(cfg)

    source = base_source(cfg)
    tokenizer = load_tokenizer(source)
    stop_ids = stop_token_ids(tokenizer)
    model, reference = build_models(cfg, source, accelerator.device)
    optimizer = make_optimizer(cfg, [p for p in model.parameters() if p.requires_grad])
    prompts = [row["prompt"] for row in prompt_rows(read_jsonl(cfg.dataset))]
    ppo = cfg.ppo
    n_batches = math.ceil(len(prompts) / (ppo.rollout_batch_size * world))  # updates per pass over the prompts
    total = cfg.max_steps if cfg.max_steps > 0 else max(1, math.ceil(n_batches * cfg.num_epochs))
    optimizer_steps = total * ppo.ppo_epochs * ppo.rollout_batch_size // (ppo.mini_batch_size * cfg.grad_accum)
    scheduler = get_scheduler(cfg.lr_scheduler, optimizer, num_training_steps=optimizer_steps,
                              num_warmup_steps=math.ceil(cfg.warmup_ratio * optimizer_steps))
    kl_ctl = KLController(ppo.kl_coef, ppo.kl_target, ppo.kl_horizon)
    start = 0
    if cfg.resume_from_checkpoint:
        state = load_checkpoint(model, cfg.resume_from_checkpoint)
        optimizer.load_state_dict(state["optimizer"])
        if "scheduler" in state:
            scheduler.load_state_dict(state["scheduler"])
        start, kl_ctl.value = int(state["step"]), state.get("kl_coef", kl_ctl.value)
    model, optimizer = accelerator.prepare(model, optimizer)  # DDP across processes; unchanged on one
    unwrapped = accelerator.unwrap_model(model)
    compute = precision(cfg)
    autocast = torch.autocast(accelerator.device.type, dtype=TORCH_DTYPES[compute], enabled=compute != "fp32")
    next_prompts = prompt_sampler(prompts, ppo.rollout_batch_size * world, cfg.seed)  # one order on every rank
    for _ in range(start):
        next_prompts()  # a resumed run continues the same order

    history: list[dict[str, float]] = []
    timer = ProgressTimer()
    tracker = Tracker(cfg, enabled=accelerator.is_main_process)
    reporter.started("ppo", total)
    t0 = time.monotonic()
    checkpoint_path = None
    for step in range(start + 1, total + 1):
        torch.manual_seed(cfg.seed + step * world + rank)  # each rank samples its own responses
        batch_prompts = next_prompts()[rank * ppo.rollout_batch_size : (rank + 1) * ppo.rollout_batch_size]
        with autocast:
            batch = rollout(unwrapped, tokenizer, batch_prompts, cfg, stop_ids, accelerator.device)  # 1. sample
        scores = score_responses(batch, reward_fn, tokenizer, cfg)  # 2. score
        metrics = ppo_update(model, reference, optimizer, scheduler, batch, scores, cfg, kl_ctl.value,  # 3. learn
                             accelerator, autocast)
        metrics["kl_coef"] = kl_ctl.value
        kl_ctl.update(metrics["kl"], ppo.rollout_batch_size * world)

        history.append({"step": step, **metrics})
        if accelerator.is_main_process:
            reporter.progress(step, total, timer.eta(step, total), epoch=step / n_batches)
            if step % cfg.logging_steps == 0 or step == total:
                reporter.metrics(step, metrics)
                tracker.log(step, metrics)
        if step == total or (cfg.save_steps and step % cfg.save_steps == 0):
            checkpoint_path = save(unwrapped, tokenizer, optimizer, scheduler, kl_ctl, step, cfg, accelerator)
            if accelerator.is_main_process:
                reporter.checkpoint(step, checkpoint_path, cfg.checkpoint_kind, metrics)

    if checkpoint_path is None:  # resumed at or past the end
        checkpoint_path = save(unwrapped, tokenizer, optimizer, scheduler, kl_ctl, start, cfg, accelerator)
    tracker.close()
    first, final = (history[0], history[-1]) if history else ({}, {})
    return {
        "method": "ppo",
        "step": max(start, total),
        "checkpoint": str(checkpoint_path.resolve()),
        "kind": cfg.checkpoint_kind,
        "base_model": source,
        "value_head": str((checkpoint_path / "value_head.safetensors").resolve()),
        "metrics": final,
        "first_reward_mean": first.get("reward_mean"),
        "final_reward_mean": final.get("reward_mean"),
        "history": history,
        "runtime_s": round(time.monotonic() - t0, 2),
        "replicas_in_sync": replicas_in_sync(unwrapped),
        "report_to": tracker.names,
        **run_setup(cfg),
    }


def save(model: PolicyWithValue, tokenizer, optimizer, scheduler, kl_ctl: KLController, step: int, cfg: RunConfig,
         accelerator) -> Path:
    """Rank 0 writes the checkpoint (every rank holds the same weights); the others wait for it."""
    path = Path(cfg.output_dir) / f"checkpoint-{step}"
    if accelerator.is_main_process:
        state = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "kl_coef": kl_ctl.value}
        save_checkpoint(model, tokenizer, state, step, cfg)
    accelerator.wait_for_everyone()
    return path


def build_models(cfg: RunConfig, source: str, device) -> tuple[PolicyWithValue, nn.Module | None]:
    """The policy with its value head, and the reference: None with an adapter (the base with adapters off), a
    frozen copy for a full fine-tune. Dropout is off (old and new log-probs must come from the same function)."""
    from peft import get_peft_model

    policy = load_model(cfg, source)
    reference = None
    if cfg.adapter == "full":
        reference = load_model(cfg, source).to(device).eval().requires_grad_(False)
    else:
        policy = get_peft_model(policy, peft_config(cfg, policy))
    if cfg.gradient_checkpointing:
        policy.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    disable_dropout(policy)
    hidden_size = policy.config.get_text_config().hidden_size
    model = PolicyWithValue(policy, hidden_size).to(device)
    trainable_in_fp32(model)
    return model, reference


def disable_dropout(model: nn.Module) -> None:
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0
    text_config = model.config.get_text_config()
    if hasattr(text_config, "attention_dropout"):
        text_config.attention_dropout = 0.0


def prompt_sampler(prompts: list, batch_size: int, seed: int) -> Callable[[], list]:
    """A function returning the next `batch_size` prompts, reshuffled on every pass over the dataset."""
    rng = random.Random(seed)
    order: list[int] = []

    def next_prompts() -> list:
        batch = []
        while len(batch) < batch_size:
            if not order:
                order.extend(range(len(prompts)))
                rng.shuffle(order)
            batch.append(prompts[order.pop()])
        return batch

    return next_prompts


def score_responses(batch: Rollout, reward_fn: RewardFn, tokenizer, cfg: RunConfig) -> torch.Tensor:
    """The reward of each response: the reward function's score, less the missing-EOS penalty where it never ended."""
    completion_ids = [r[m.bool()].tolist() for r, m in zip(batch.responses, batch.mask)]
    completions = [tokenizer.decode(ids, skip_special_tokens=True) for ids in completion_ids]
    scores = reward_fn(prompts=batch.prompts, completions=completions, completion_ids=completion_ids)
    scores = torch.tensor(scores, dtype=torch.float, device=batch.responses.device)
    if cfg.ppo.missing_eos_penalty is not None:
        scores = scores - cfg.ppo.missing_eos_penalty * (~batch.ended).float()
    return scores


def ppo_update(model, reference, optimizer, scheduler, batch: Rollout, scores: torch.Tensor, cfg: RunConfig,
               kl_coef: float, accelerator, autocast) -> dict[str, float]:
    """One PPO update on a scored rollout: old log-probs and values, KL-shaped rewards, GAE, then the epochs.

    `model` is the prepared (DDP) PolicyWithValue: its backward passes all-reduce the gradients. An optimizer step
    follows every `grad_accum` minibatches of `ppo.mini_batch_size`; the passes without gradients run in chunks
    of `batch_size` rows.
    """
    ppo = cfg.ppo
    unwrapped = accelerator.unwrap_model(model)
    mask = batch.mask

    # Log-probs and values of the behaviour policy, and the reference's log-probs (no value head there).
    with torch.no_grad(), autocast:
        old_logprobs, old_values, ref_logprobs = [], [], []
        for idx in torch.arange(len(batch.prompts)).split(cfg.batch_size):
            chunk = batch.select(idx)
            logits, values = unwrapped(chunk.query_response, chunk.attention_mask, chunk.context_length,
                                       ppo.temperature)
            old_logprobs.append(token_logprobs(logits, chunk.responses))
            old_values.append(values)
            ref_logprobs.append(reference_logprobs(unwrapped, reference, chunk, ppo.temperature))
    old_logprobs, old_values = torch.cat(old_logprobs) * mask, torch.cat(old_values) * mask
    ref_logprobs = torch.cat(ref_logprobs)

    # Per-token rewards: the KL penalty everywhere, the score on the last response token.
    kl = (old_logprobs - ref_logprobs) * mask
    rewards = -kl_coef * kl
    last = (mask.sum(-1).long() - 1).clamp(min=0)
    rewards[torch.arange(len(last)), last] += scores
    if ppo.whiten_rewards:
        rewards = whiten(rewards, mask, shift_mean=False)
    advantages, returns = compute_gae(rewards, old_values, mask, ppo.gamma, ppo.lam)
    advantages = whiten(advantages, mask)

    # PPO epochs over minibatches; an optimizer step every grad_accum of them (gradients all-reduced on that one).
    model.train()
    stats: dict[str, list[float]] = {k: [] for k in ("policy_loss", "value_loss", "clipfrac", "vf_clipfrac", "entropy", "approx_kl")}
    for _ in range(ppo.ppo_epochs):
        for i, idx in enumerate(torch.randperm(len(batch.prompts)).split(ppo.mini_batch_size)):
            steps_now = (i + 1) % cfg.grad_accum == 0
            with contextlib.nullcontext() if steps_now else accelerator.no_sync(model):
                chunk = batch.select(idx)
                with autocast:
                    new_logits, new_values = model(chunk.query_response, chunk.attention_mask, chunk.context_length,
                                                   ppo.temperature)
                new_logprobs = token_logprobs(new_logits, chunk.responses)
                m = chunk.mask
                pg_loss, pg_clipfrac = policy_loss(new_logprobs, old_logprobs[idx], advantages[idx], m, ppo.cliprange)
                vf_loss, vf_clipfrac = value_loss(new_values, old_values[idx], returns[idx], m, ppo.cliprange_value)
                accelerator.backward((pg_loss + ppo.vf_coef * vf_loss) / cfg.grad_accum)
            if steps_now:
                accelerator.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
            with torch.no_grad():
                stats["policy_loss"].append(pg_loss.item())
                stats["value_loss"].append(vf_loss.item())
                stats["clipfrac"].append(pg_clipfrac.item())
                stats["vf_clipfrac"].append(vf_clipfrac.item())
                stats["entropy"].append(masked_mean(entropy_from_logits(new_logits), m).item())
                stats["approx_kl"].append(0.5 * masked_mean((new_logprobs - old_logprobs[idx]) ** 2, m).item())
    model.eval()

    # Figures over every rank's rollouts.
    all_scores = accelerator.gather(scores)
    local = {
        "kl": kl.sum(-1).mean().item(),
        "non_score_reward": (-kl_coef * kl).sum(-1).mean().item(),
        "response_length": mask.sum(-1).mean().item(),
        "ended_fraction": batch.ended.float().mean().item(),
        **{k: sum(v) / len(v) for k, v in stats.items()},
    }
    means = accelerator.reduce(torch.tensor(list(local.values()), device=scores.device), "mean").tolist()
    return {
        "reward_mean": all_scores.mean().item(),
        "reward_std": all_scores.std().item() if len(all_scores) > 1 else 0.0,
        **dict(zip(local, means)),
        "learning_rate": scheduler.get_last_lr()[0],
    }


def reference_logprobs(model: PolicyWithValue, reference, batch: Rollout, temperature: float) -> torch.Tensor:
    """Per-token log-probs of the responses under the reference: the policy with its adapters off, or the frozen
    copy of a full fine-tune. No value head: only the response positions' logits."""
    if reference is None:
        with model.policy.disable_adapter():
            logits = response_logits(model.policy, batch.query_response, batch.attention_mask, batch.context_length,
                                     temperature)
    else:
        logits = response_logits(reference, batch.query_response, batch.attention_mask, batch.context_length, temperature)
    return token_logprobs(logits, batch.responses)
