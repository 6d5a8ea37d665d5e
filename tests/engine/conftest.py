"""Fixtures for the engine tests: pure Python + torch, no Django database.

The built-in tiny model is built once per session into a temp dir; datasets are small synthetic JSONL files
in TRL's formats, where the "chosen" responses differ systematically from the "rejected" ones.
"""

import json
import logging
import os
import random

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
logging.getLogger("bitsandbytes").setLevel(logging.ERROR)

WORDS = "people time year day way thing man woman child world life hand part place case week work number".split()


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def preference_rows(n=48, seed=0, conversational=True):
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        question = " ".join(rng.choice(WORDS) for _ in range(5))
        good = "good " + " ".join(rng.choice(WORDS) for _ in range(3)) + " thanks"
        bad = "bad " + " ".join(rng.choice(WORDS) for _ in range(3)) + " sorry"
        if conversational:
            rows.append({
                "prompt": [{"role": "user", "content": question}],
                "chosen": [{"role": "assistant", "content": good}],
                "rejected": [{"role": "assistant", "content": bad}],
                "margin": rng.choice([0.0, 0.5, 1.0]),
                "prompt_id": f"p{i}",
                "source": "synthetic",  # provenance columns are carried in files and ignored by the engine
            })
        else:
            rows.append({"prompt": question, "chosen": " " + good, "rejected": " " + bad})
    return rows


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
    """A data dir with the tiny model already built in it."""
    from training.engine.tiny import ensure_tiny_model, tiny_model_dir

    path = tmp_path_factory.mktemp("data")
    ensure_tiny_model(tiny_model_dir(path))
    return str(path)


@pytest.fixture(scope="session")
def tiny_path(data_dir):
    from training.engine.tiny import tiny_model_dir

    return str(tiny_model_dir(data_dir))


@pytest.fixture(scope="session")
def datasets(tmp_path_factory):
    d = tmp_path_factory.mktemp("datasets")
    pref = preference_rows()
    return {
        "pref": write_jsonl(d / "pref.jsonl", pref),
        "pref_text": write_jsonl(d / "pref_text.jsonl", preference_rows(conversational=False)),
        "kto": write_jsonl(d / "kto.jsonl", [
            {"prompt": r["prompt"], "completion": r["chosen"] if i % 2 else r["rejected"], "label": bool(i % 2)}
            for i, r in enumerate(pref)
        ]),
        "messages": write_jsonl(d / "messages.jsonl", [
            {"messages": r["prompt"] + r["chosen"]} for r in pref
        ]),
        "prompts": write_jsonl(d / "prompts.jsonl", [
            {"prompt_id": r["prompt_id"], "prompt": r["prompt"]} for r in pref[:6]
        ]),
    }


def make_config(tmp_path, data_dir, **fields):
    from training.engine.config import RunConfig

    base = {"output_dir": str(tmp_path / "out"), "data_dir": data_dir, "lora_r": 8, "lora_alpha": 16,
            "batch_size": 8, "max_length": 128, "eval_fraction": 0.25}
    return RunConfig.from_dict({**base, **fields})


def run_method(cfg, **kwargs):
    """Run one method in-process; return (result, events)."""
    import importlib

    from training.engine.cli import METHOD_FUNCTIONS
    from training.engine.common import setup_runtime
    from training.engine.events import Reporter

    reporter = Reporter(echo=False)
    setup_runtime(cfg)
    module_name, function_name = METHOD_FUNCTIONS[cfg.method]
    result = getattr(importlib.import_module(module_name), function_name)(cfg, reporter, **kwargs)
    return result, reporter


@pytest.fixture(scope="session")
def reward_checkpoint(tmp_path_factory, data_dir, datasets):
    """A LoRA reward model trained once for the tests that need a reward checkpoint."""
    tmp = tmp_path_factory.mktemp("reward")
    cfg = make_config(tmp, data_dir, method="reward", dataset=datasets["pref"], max_steps=30)
    result, _ = run_method(cfg)
    return result


def first_token_targets(tiny_path, prompts, mass=0.3):
    """Tokens the base model most expects to start a response with, covering about `mass` of the probability.

    A reward for starting with one of them is reachable for a small adapter and starts around `mass`.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_path)
    model = AutoModelForCausalLM.from_pretrained(tiny_path).eval()
    probs = 0
    with torch.no_grad():
        for prompt in prompts:
            ids = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, return_tensors="pt",
                                                return_dict=True)["input_ids"]
            probs = probs + model(ids).logits[0, -1].softmax(-1)
    probs = probs / len(prompts)
    order = probs.argsort(descending=True)
    k = int((probs[order].cumsum(0) < mass).sum()) + 1
    return set(order[:k].tolist())
