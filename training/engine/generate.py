"""Sample responses from the base model or a checkpoint, for the next annotation round (or for evaluation).

Writes output_dir/generations.jsonl, one row per response:
    {"prompt_id": ..., "messages": [...], "response": "...", "params": {...}}

A prompt row with ``followups`` (a list of user messages: a critique request, then a revision request) goes on
as a conversation: after the answer each follow-up is asked in turn, and every reply is kept (n must be 1):
    {"prompt_id": ..., "messages": [...], "response": "the last reply", "turns": ["answer", "critique", "revision"], ...}

With ``generate.stream`` (an arena battle's answer) responses are written one at a time and each one's text is
reported as it grows, at most every STREAM_INTERVAL_S and once complete:
    {"event": "text", "prompt_id": ..., "sample": 0, "text": "the answer so far", "final": false}
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch
from transformers.generation.streamers import BaseStreamer

from .checkpoints import adapter_base
from .common import (
    base_source,
    device,
    is_adapter_dir,
    load_causal_lm_for_inference,
    load_tokenizer,
    stop_token_ids,
)
from .config import RunConfig
from .data import as_messages, prompt_rows, read_jsonl
from .events import ProgressTimer, Reporter
from .ppo import encode_prompt, left_pad, truncate_at_stop


@torch.no_grad()
def sample(model, tokenizer, prompts: list, *, n: int, temperature: float, top_p: float, max_new_tokens: int,
           batch_size: int = 8, seed: int = 0) -> list[list[str]]:
    """n responses per prompt (strings, stop token removed)."""
    device = next(model.parameters()).device
    stop_ids = stop_token_ids(tokenizer)
    torch.manual_seed(seed)
    out: list[list[str]] = []
    for start in range(0, len(prompts), batch_size):
        batch = prompts[start : start + batch_size]
        ids, mask = left_pad([encode_prompt(tokenizer, p) for p in batch], tokenizer.pad_token_id, device)
        sampling = dict(do_sample=True, temperature=temperature, top_p=top_p, top_k=0) if temperature > 0 else dict(do_sample=False)
        generated = model.generate(
            input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens, num_return_sequences=n,
            eos_token_id=stop_ids, pad_token_id=tokenizer.pad_token_id, **sampling,
        )
        responses, response_mask, _ = truncate_at_stop(generated[:, ids.shape[1]:], stop_ids, tokenizer.pad_token_id)
        texts = tokenizer.batch_decode(responses, skip_special_tokens=True)
        out.extend(texts[i * n : (i + 1) * n] for i in range(len(batch)))
    return out


STREAM_INTERVAL_S = 0.1  # how often a streamed response's text is reported while it grows


class TextReporter(BaseStreamer):
    """Receives the tokens ``generate`` writes, one step at a time, and reports the decoded text as it grows."""

    def __init__(self, tokenizer, report, interval_s: float | None = None):
        self.tokenizer, self.report = tokenizer, report
        self.interval_s = STREAM_INTERVAL_S if interval_s is None else interval_s
        self.prompt_seen, self.tokens, self.last, self.reported = False, [], 0.0, None

    def put(self, value):
        if not self.prompt_seen:  # generate first hands over the prompt itself
            self.prompt_seen = True
            return
        self.tokens.extend(value.reshape(-1).tolist())
        if time.monotonic() - self.last >= self.interval_s:
            self.flush(final=False)

    def end(self):
        pass  # the caller reports the final text, cut at the stop token

    def flush(self, *, final: bool, text: str | None = None):
        text = self.tokenizer.decode(self.tokens, skip_special_tokens=True) if text is None else text
        self.last = time.monotonic()
        if text != self.reported or final:
            self.reported = text
            self.report(text, final)


@torch.no_grad()
def sample_streamed(model, tokenizer, prompt, *, temperature: float, top_p: float, max_new_tokens: int, seed: int,
                    report) -> str:
    """One response to one prompt; ``report(text, final)`` is called as its text grows and once complete."""
    device = next(model.parameters()).device
    stop_ids = stop_token_ids(tokenizer)
    torch.manual_seed(seed)
    ids = torch.tensor([encode_prompt(tokenizer, prompt)], device=device)
    sampling = dict(do_sample=True, temperature=temperature, top_p=top_p, top_k=0) if temperature > 0 else dict(do_sample=False)
    streamer = TextReporter(tokenizer, report)
    generated = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                               eos_token_id=stop_ids, pad_token_id=tokenizer.pad_token_id, streamer=streamer,
                               **sampling)
    response, _, _ = truncate_at_stop(generated[:, ids.shape[1]:], stop_ids, tokenizer.pad_token_id)
    text = tokenizer.batch_decode(response, skip_special_tokens=True)[0]
    streamer.flush(final=True, text=text)
    return text


def load_for_generation(checkpoint: str | None, cfg: RunConfig):
    """(model, tokenizer) for a checkpoint (adapter or full) or, with None, for the run's base model."""
    base = base_source(cfg)
    if checkpoint and is_adapter_dir(checkpoint):
        base = adapter_base(checkpoint, data_dir=cfg.data_dir, default=base)
    tokenizer_source = checkpoint if checkpoint and (Path(checkpoint) / "tokenizer_config.json").is_file() else base
    tokenizer = load_tokenizer(tokenizer_source)
    model = load_causal_lm_for_inference(checkpoint, base)
    model.to(device()).eval()
    return model, tokenizer


def train_generate(cfg: RunConfig, reporter: Reporter) -> dict[str, Any]:
    g = cfg.generate
    rows = prompt_rows(read_jsonl(g.prompts or cfg.dataset))[: g.max_prompts]
    model, tokenizer = load_for_generation(g.checkpoint, cfg)
    params = {"model": g.checkpoint or cfg.base_model, "temperature": g.temperature, "top_p": g.top_p,
              "max_new_tokens": g.max_new_tokens, "seed": cfg.seed}
    path = Path(cfg.output_dir) / "generations.jsonl"
    if g.stream:
        return _generate_streamed(cfg, reporter, rows, model, tokenizer, params, path)
    batches = max(1, -(-len(rows) // cfg.batch_size))
    reporter.started("generate", batches)
    timer = ProgressTimer()
    written = 0
    with open(path, "w", encoding="utf-8") as f:
        for b in range(batches):
            chunk = rows[b * cfg.batch_size : (b + 1) * cfg.batch_size]
            responses = sample(model, tokenizer, [r["prompt"] for r in chunk], n=g.n, temperature=g.temperature,
                               top_p=g.top_p, max_new_tokens=g.max_new_tokens, batch_size=cfg.batch_size,
                               seed=cfg.seed + b)
            turns = _follow_up(model, tokenizer, chunk, responses, cfg, seed=cfg.seed + b)
            for row, texts, row_turns in zip(chunk, responses, turns):
                for i, text in enumerate(texts):
                    record = {"prompt_id": row["prompt_id"], "messages": as_messages(row["prompt"], "user"),
                              "response": text, "params": {**params, "sample": i}}
                    if row_turns is not None:
                        record["response"], record["turns"] = row_turns[-1], row_turns
                    f.write(json.dumps(record) + "\n")
                    written += 1
            reporter.progress(b + 1, batches, timer.eta(b + 1, batches))
    return {"method": "generate", "path": str(path.resolve()), "prompts": len(rows), "responses": written, "params": params}


def _follow_up(model, tokenizer, rows: list[dict], answers: list[list[str]], cfg: RunConfig, *, seed: int
               ) -> list[list[str] | None]:
    """For each row with ``followups``: every reply of the conversation (its answer, then one reply per follow-up,
    each asked after the previous reply); None for a row without. Rows are sampled together, one turn at a time."""
    g = cfg.generate
    turns: list[list[str] | None] = [None] * len(rows)
    conversations: list[list[dict]] = [[] for _ in rows]
    for k, row in enumerate(rows):
        if row.get("followups"):
            if g.n != 1:
                raise ValueError("generate.n: must be 1 when prompts carry followups (one conversation per prompt)")
            turns[k] = [answers[k][0]]
            conversations[k] = as_messages(row["prompt"], "user") + [{"role": "assistant", "content": answers[k][0]}]
    depth = max((len(row.get("followups") or []) for row in rows), default=0)
    for step in range(depth):
        asked = [k for k, row in enumerate(rows) if len(row.get("followups") or []) > step]
        for k in asked:
            conversations[k].append({"role": "user", "content": rows[k]["followups"][step]})
        replies = sample(model, tokenizer, [conversations[k] for k in asked], n=1, temperature=g.temperature,
                         top_p=g.top_p, max_new_tokens=g.max_new_tokens, batch_size=cfg.batch_size,
                         seed=seed + 1000 * (step + 1))
        for k, (reply,) in zip(asked, replies):
            turns[k].append(reply)
            conversations[k].append({"role": "assistant", "content": reply})
    return turns


def _generate_streamed(cfg: RunConfig, reporter: Reporter, rows: list[dict], model, tokenizer, params: dict,
                       path: Path) -> dict[str, Any]:
    g = cfg.generate
    total = len(rows) * g.n
    reporter.started("generate", total)
    timer = ProgressTimer()
    written = 0
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            for i in range(g.n):
                def report(text: str, final: bool, prompt_id=row["prompt_id"], sample_index=i):
                    reporter.emit("text", prompt_id=prompt_id, sample=sample_index, text=text, final=final)

                text = sample_streamed(model, tokenizer, row["prompt"], temperature=g.temperature, top_p=g.top_p,
                                       max_new_tokens=g.max_new_tokens, seed=cfg.seed + written, report=report)
                record = {"prompt_id": row["prompt_id"], "messages": as_messages(row["prompt"], "user"),
                          "response": text, "params": {**params, "sample": i}}
                f.write(json.dumps(record) + "\n")
                f.flush()
                written += 1
                reporter.progress(written, total, timer.eta(written, total))
    return {"method": "generate", "path": str(path.resolve()), "prompts": len(rows), "responses": written,
            "params": params, "stream": True}
