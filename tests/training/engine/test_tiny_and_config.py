"""The built-in tiny model and the run config."""

import hashlib
import json
from pathlib import Path

import pytest

from training.engine.config import RunConfig

pytestmark = []


def _digests(path):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(Path(path).iterdir())}


def test_tiny_model_builds_to_the_same_bytes_twice(tmp_path, tiny_path):
    from training.engine.tiny import build_tiny_model

    build_tiny_model(tmp_path / "again")
    assert _digests(tmp_path / "again") == _digests(tiny_path)
    assert {"model.safetensors", "tokenizer.json", "config.json", "chat_template.jinja"} <= set(_digests(tiny_path))


def test_ensure_tiny_model_is_idempotent(tmp_path):
    from training.engine.tiny import ensure_tiny_model

    first = ensure_tiny_model(tmp_path / "tiny")
    stamp = (first / "model.safetensors").stat().st_mtime_ns
    assert ensure_tiny_model(tmp_path / "tiny") == first
    assert (first / "model.safetensors").stat().st_mtime_ns == stamp
    assert [p.name for p in tmp_path.iterdir()] == ["tiny"]  # no temp dir left behind


def test_tiny_model_loads_as_causal_lm_and_reward_model(tiny_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_path)
    assert (tokenizer.pad_token, tokenizer.bos_token, tokenizer.eos_token) == ("<|pad|>", "<|bos|>", "<|eos|>")
    ids = tokenizer("hello world", return_tensors="pt")["input_ids"]
    lm = AutoModelForCausalLM.from_pretrained(tiny_path)
    assert lm.config.model_type == "llama"
    assert lm(ids).logits.shape == (1, ids.shape[1], len(tokenizer))
    rm = AutoModelForSequenceClassification.from_pretrained(tiny_path, num_labels=1)
    assert rm(ids).logits.shape == (1, 1)
    assert torch.isfinite(rm(ids).logits).all()


def test_chat_template_closes_turns_and_marks_assistant_text(tiny_path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_path)
    messages = [{"role": "user", "content": "hello"}, {"role": "assistant", "content": "good answer"}]
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    assert text == "<|bos|><|user|>\nhello<|end|>\n<|assistant|>\ngood answer<|end|>\n"
    out = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    masked = [t for t, m in zip(out["input_ids"], out["assistant_masks"]) if m]
    assert tokenizer.decode(masked) == "good answer<|end|>"
    prompt = tokenizer.apply_chat_template(messages[:1], tokenize=False, add_generation_prompt=True)
    assert prompt.endswith("<|assistant|>\n")


def test_resolve_model_source(tmp_path, data_dir, tiny_path):
    from training.engine.tiny import resolve_model_source

    assert resolve_model_source("tiny", data_dir) == tiny_path
    assert resolve_model_source(str(tmp_path), data_dir) == str(tmp_path.resolve())
    assert resolve_model_source("Qwen/Qwen2.5-0.5B-Instruct", data_dir) == "Qwen/Qwen2.5-0.5B-Instruct"


def test_config_defaults_and_per_method_learning_rates():
    cfg = RunConfig.from_json({"method": "dpo", "output_dir": "o", "dataset": "d.jsonl"})
    assert (cfg.adapter, cfg.base_model, cfg.max_steps, cfg.optim) == ("lora", "tiny", -1, "adamw_torch")
    assert cfg.lr == 2e-4 and cfg.dpo.beta == 0.1 and cfg.checkpoint_kind == "lora"
    assert RunConfig.from_json({"method": "sft", "output_dir": "o", "dataset": "d"}).lr == 5e-4
    full = RunConfig.from_json({"method": "sft", "output_dir": "o", "dataset": "d", "adapter": "full"})
    assert full.lr == 2e-5 and full.checkpoint_kind == "full"
    assert RunConfig.from_json({"method": "sft", "output_dir": "o", "dataset": "d", "learning_rate": 0.1}).lr == 0.1


def test_config_reads_a_file_and_round_trips(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"method": "kto", "output_dir": "o", "dataset": "d", "kto": {"beta": 0.2}}))
    cfg = RunConfig.from_json(str(path))
    assert cfg.kto.beta == 0.2
    assert RunConfig.from_json(cfg.to_dict()) == cfg


@pytest.mark.parametrize(
    "data, field",
    [
        ({"method": "dpo", "output_dir": "o", "dataset": "d", "learnig_rate": 1}, "learnig_rate"),
        ({"method": "dpo", "output_dir": "o", "dataset": "d", "dpo": {"betta": 1}}, "betta"),
        ({"method": "nope", "output_dir": "o", "dataset": "d"}, "method"),
        ({"method": "dpo", "output_dir": "o"}, "dataset"),
        ({"method": "dpo", "output_dir": "o", "dataset": "d", "adapter": "lorax"}, "adapter"),
        ({"method": "dpo", "output_dir": "o", "dataset": "d", "lora_dropout": 1.5}, "lora_dropout"),
        ({"method": "dpo", "output_dir": "o", "dataset": "d", "dpo": {"beta": 0}}, "dpo.beta"),
        ({"method": "reward", "output_dir": "o", "dataset": "d", "adapter": "prompt_tuning"}, "adapter"),
        ({"method": "rloo", "output_dir": "o", "dataset": "d", "batch_size": 6}, "rloo.num_generations"),
        ({"method": "ppo", "output_dir": "o", "dataset": "d", "ppo": {"mini_batch_size": 3}}, "ppo.mini_batch_size"),
        ({"method": "evaluate", "output_dir": "o", "dataset": "d"}, "reward_checkpoint"),
        ({"method": "dpo", "output_dir": "o", "dataset": "d", "optim": "adam9"}, "optim"),
        ({"method": "dpo", "output_dir": "o", "dataset": "d", "max_steps": 0}, "max_steps"),
    ],
)
def test_config_rejects_bad_values_naming_the_field(data, field):
    with pytest.raises(ValueError, match=field):
        RunConfig.from_json(data)
