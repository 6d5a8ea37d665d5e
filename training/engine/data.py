"""Reading dataset snapshots (JSONL) into the row shapes TRL expects.

Accepted rows (TRL's own formats; each value is a string, or a list of `{role, content}` messages):

    preference (reward, dpo)  {"prompt", "chosen", "rejected", "margin"?}   prompt optional for reward
    unpaired   (kto)          {"prompt", "completion", "label": bool}        preference rows are unpaired
    sft                       {"messages"} | {"prompt", "completion"}        preference rows: prompt + chosen
    prompts    (ppo, rloo,    {"prompt"} | {"messages"}                      preference rows: their prompts
                generate, win-rate)

A preference row with `"tie": true` (exports with `ties=flag` keep ties that way, margin 0) is not a preference:
`without_ties` leaves it out of every pairwise loss (reward, DPO, KTO from pairs) and counts it.

Other keys (provenance, ids, ...) are carried in the file but dropped here. If any row of a file is
conversational, plain strings in it are wrapped as messages, so the whole dataset has one shape.
"""

from __future__ import annotations

import json
import random
from typing import Any


def read_jsonl(path: str) -> list[dict[str, Any]]:
    rows = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"dataset: {path} line {lineno} is not valid JSON: {exc}") from exc
            if not isinstance(row, dict):
                raise ValueError(f"dataset: {path} line {lineno} is not a JSON object")
            rows.append(row)
    if not rows:
        raise ValueError(f"dataset: {path} has no rows")
    return rows


def is_messages(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(m, dict) and "role" in m for m in value)


def as_messages(value: str | list, role: str) -> list[dict[str, str]]:
    return value if is_messages(value) else [{"role": role, "content": value}]


def _require(rows: list[dict], keys: tuple[str, ...], shape: str) -> None:
    for i, row in enumerate(rows):
        missing = [k for k in keys if k not in row]
        if missing:
            raise ValueError(f"dataset: row {i} lacks {', '.join(missing)} (expected {shape} rows)")


def without_ties(rows: list[dict]) -> tuple[list[dict], int]:
    """The rows that are not ties, and how many ties were left out."""
    kept = [r for r in rows if not r.get("tie")]
    return kept, len(rows) - len(kept)


def preference_rows(rows: list[dict], use_margin: bool = True) -> list[dict]:
    """{prompt, chosen, rejected, margin?} rows, all plain text or all conversational."""
    if not rows:
        raise ValueError("dataset: no preference rows to train on (ties are left out of pairwise losses)")
    _require(rows, ("chosen", "rejected"), "prompt/chosen/rejected")
    has_prompt = all("prompt" in r for r in rows)
    has_margin = use_margin and any("margin" in r for r in rows)
    conversational = any(is_messages(r.get(k)) for r in rows for k in ("prompt", "chosen", "rejected"))
    out = []
    for r in rows:
        row = {"chosen": r["chosen"], "rejected": r["rejected"]}
        if has_prompt:
            row["prompt"] = r["prompt"]
        if conversational:
            row["chosen"] = as_messages(row["chosen"], "assistant")
            row["rejected"] = as_messages(row["rejected"], "assistant")
            if has_prompt:
                row["prompt"] = as_messages(row["prompt"], "user")
        if has_margin:
            row["margin"] = float(r.get("margin") or 0.0)
        out.append(row)
    return out


def unpaired_rows(rows: list[dict]) -> list[dict]:
    """{prompt, completion, label} rows for KTO; a preference row becomes a desirable and an undesirable row."""
    out = []
    for i, r in enumerate(rows):
        if "completion" in r and "label" in r:
            out.append({"prompt": r.get("prompt", ""), "completion": r["completion"], "label": bool(r["label"])})
        elif "chosen" in r and "rejected" in r:
            out.append({"prompt": r.get("prompt", ""), "completion": r["chosen"], "label": True})
            out.append({"prompt": r.get("prompt", ""), "completion": r["rejected"], "label": False})
        else:
            raise ValueError(f"dataset: row {i} has neither completion/label nor chosen/rejected (expected KTO rows)")
    if any(is_messages(r["prompt"]) or is_messages(r["completion"]) for r in out):
        for r in out:
            r["prompt"] = as_messages(r["prompt"], "user")
            r["completion"] = as_messages(r["completion"], "assistant")
    return out


def sft_rows(rows: list[dict], completion_only: bool = False) -> list[dict]:
    """{messages} or {prompt, completion} rows for SFT (a preference row contributes prompt + chosen).

    ``completion_only``: a conversation that ends with an assistant turn becomes {prompt: the turns before it,
    completion: that turn}, so the loss is on the answer alone (a demonstration's earlier turns were not written
    by its rater)."""
    if all("messages" in r for r in rows):
        if completion_only and all(r["messages"] and r["messages"][-1].get("role") == "assistant" for r in rows):
            return [{"prompt": r["messages"][:-1], "completion": r["messages"][-1:]} for r in rows]
        return [{"messages": r["messages"]} for r in rows]
    out = []
    for i, r in enumerate(rows):
        if "completion" in r:
            completion = r["completion"]
        elif "chosen" in r:
            completion = r["chosen"]
        else:
            raise ValueError(f"dataset: row {i} needs messages, prompt/completion or prompt/chosen (SFT rows)")
        if "prompt" not in r:
            raise ValueError(f"dataset: row {i} lacks prompt (SFT rows)")
        out.append({"prompt": r["prompt"], "completion": completion})
    if any(is_messages(r["prompt"]) or is_messages(r["completion"]) for r in out):
        for r in out:
            r["prompt"] = as_messages(r["prompt"], "user")
            r["completion"] = as_messages(r["completion"], "assistant")
    return out


def prompt_rows(rows: list[dict]) -> list[dict]:
    """Distinct prompts, in file order, each as {"prompt_id", "prompt"}; prompt_id is the row's id if it has one.
    A row's ``followups`` (user messages asked after each reply, e.g. critique then revision) are kept."""
    out, seen = [], set()
    for i, r in enumerate(rows):
        if "prompt" in r:
            prompt = r["prompt"]
        elif "messages" in r:
            prompt = list(r["messages"])
            while prompt and prompt[-1].get("role") == "assistant":
                prompt.pop()
        else:
            raise ValueError(f"dataset: row {i} has no prompt or messages")
        key = json.dumps(prompt, sort_keys=True)
        if key in seen:
            continue
        seen.add(key)
        prompt_id = r.get("prompt_id", r.get("external_id", r.get("id", i)))
        out.append({"prompt_id": prompt_id, "prompt": prompt})
        if r.get("followups"):
            followups = r["followups"]
            if not isinstance(followups, list) or not all(isinstance(f, str) and f for f in followups):
                raise ValueError(f"dataset: row {i} followups must be a list of non-empty strings (user messages)")
            out[-1]["followups"] = followups
    return out


def sft_token_lengths(tokenizer, rows: list[dict]) -> list[int]:
    """Tokens per SFT row as TRL renders it (the chat template for conversations, prompt + completion + eos for
    text): what `max_length` cuts."""
    lengths = []
    for r in rows:
        if "messages" in r:
            ids = tokenizer.apply_chat_template(r["messages"], tokenize=True, return_dict=True)["input_ids"]
        elif is_messages(r["prompt"]):
            ids = tokenizer.apply_chat_template(r["prompt"] + r["completion"], tokenize=True, return_dict=True)["input_ids"]
        else:
            ids = tokenizer(r["prompt"] + r["completion"])["input_ids"] + [tokenizer.eos_token_id]
        lengths.append(len(ids))
    return lengths


def train_eval_split(rows: list, eval_fraction: float, seed: int) -> tuple[list, list]:
    """Shuffle with `seed` and hold out `eval_fraction` of the rows (at least 1 when the fraction is > 0)."""
    if eval_fraction <= 0 or len(rows) < 2:
        return list(rows), []
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    n_eval = max(1, round(len(rows) * eval_fraction))
    held = set(order[:n_eval])
    return [r for i, r in enumerate(rows) if i not in held], [r for i, r in enumerate(rows) if i in held]
