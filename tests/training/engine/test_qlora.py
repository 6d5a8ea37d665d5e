"""QLoRA (4-bit NF4 base + LoRA) on CPU: every method trains, and a QLoRA reward checkpoint works as a reward model."""

import math
from pathlib import Path

import pytest
import torch

from tests.helpers import make_config, run_method

PROMPT = [{"role": "user", "content": "people time year"}]


def length_reward(prompts, completions, completion_ids=None, **kwargs):
    return [float(len(ids)) for ids in completion_ids]


@pytest.fixture(scope="module")
def qlora_reward(tmp_path_factory, data_dir, datasets):
    tmp = tmp_path_factory.mktemp("qlora_reward")
    cfg = make_config(tmp, data_dir, method="reward", adapter="qlora", dataset=datasets["pref"], max_steps=20,
                      learning_rate=1e-3)
    result, events = run_method(cfg)
    return result, events


def test_reward_qlora_trains_and_its_checkpoint_scores_pairs(qlora_reward):
    from safetensors.torch import load_file

    from training.engine.scoring import RewardModelScorer

    result, events = qlora_reward
    assert result["step"] == 20 and events.of("checkpoint")[-1]["kind"] == "lora"
    assert math.isfinite(result["first_loss"]) and math.isfinite(result["final_loss"])
    assert result["final_loss"] < result["first_loss"]
    weights = load_file(str(Path(result["checkpoint"]) / "adapter_model.safetensors"))
    assert any(".score." in name for name in weights)  # the trained head is saved beside the adapter
    assert all(torch.isfinite(w.float()).all() for w in weights.values())

    scorer = RewardModelScorer(result["checkpoint"], base=result["base_model"])
    good, bad = scorer([PROMPT, PROMPT], ["good world life thanks", "bad world life sorry"])
    assert math.isfinite(good) and math.isfinite(bad) and good > bad


def test_a_qlora_reward_checkpoint_drives_evaluate_and_ppo(tmp_path, data_dir, datasets, qlora_reward):
    checkpoint = qlora_reward[0]["checkpoint"]
    evaluation = make_config(tmp_path / "eval", data_dir, method="evaluate", dataset=datasets["pref"],
                             reward_checkpoint=checkpoint)
    result, _ = run_method(evaluation)
    assert result["n"] == 48 and result["accuracy"] > 0.5

    ppo = make_config(tmp_path / "ppo", data_dir, method="ppo", dataset=datasets["pref"], max_steps=2,
                      reward_checkpoint=checkpoint,
                      ppo={"max_new_tokens": 4, "rollout_batch_size": 4, "mini_batch_size": 2, "ppo_epochs": 1})
    result, _ = run_method(ppo)
    assert result["step"] == 2 and all(math.isfinite(h["reward_mean"]) for h in result["history"])


@pytest.mark.parametrize("method, dataset, extra", [
    ("dpo", "pref", {}),
    ("kto", "kto", {}),
    ("sft", "messages", {}),
    ("ppo", "pref", {"ppo": {"max_new_tokens": 4, "rollout_batch_size": 4, "mini_batch_size": 2, "ppo_epochs": 1}}),
    ("rloo", "pref", {"batch_size": 4, "rloo": {"max_new_tokens": 4, "num_generations": 2}}),
])
def test_every_policy_method_trains_with_qlora(tmp_path, data_dir, datasets, method, dataset, extra):
    cfg = make_config(tmp_path, data_dir, method=method, dataset=datasets[dataset], max_steps=2, adapter="qlora",
                      **extra)
    kwargs = {"reward_fn": length_reward} if method in ("ppo", "rloo") else {}
    result, events = run_method(cfg, **kwargs)
    assert result["step"] == 2
    assert [e["step"] for e in events.of("progress")] == [1, 2]
    checkpoint = Path(result["checkpoint"])
    assert checkpoint.name == "checkpoint-2" and (checkpoint / "adapter_model.safetensors").is_file()
    assert events.of("checkpoint")[-1]["kind"] == "lora"
