"""Online RL: PPO (our loop) and RLOO (TRL) raise a programmatic reward; PPO also runs on a reward checkpoint."""

import json
from pathlib import Path
from statistics import mean

import pytest

from tests.helpers import first_token_targets, make_config, run_method, synthetic_pairs

pytestmark = []


@pytest.fixture(scope="module")
def targets(tiny_path):
    """The tokens the base model gives ~30% of its first-token probability to, over the dataset's prompts."""
    return first_token_targets(tiny_path, [r["prompt"] for r in synthetic_pairs()])


@pytest.fixture(scope="module")
def starts_with_target(targets):
    """Reward 1 for a response that starts with one of the target tokens, else 0."""

    def reward(prompts, completions, completion_ids, **kwargs):
        return [float(bool(ids) and ids[0] in targets) for ids in completion_ids]

    return reward


def first_token_mass(tiny_path, checkpoint, targets):
    """Mean probability of starting with a target token: (base, base + adapter), over the dataset's prompts."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_path)
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_path), checkpoint).eval()
    index = torch.tensor(sorted(targets))

    def mass():
        total = 0.0
        with torch.no_grad():
            for row in synthetic_pairs():
                ids = tokenizer.apply_chat_template(row["prompt"], add_generation_prompt=True, return_tensors="pt",
                                                    return_dict=True)["input_ids"]
                total += model(ids).logits[0, -1].softmax(-1)[index].sum().item()
        return total / len(synthetic_pairs())

    with model.disable_adapter():
        base = mass()
    return base, mass()


def test_ppo_raises_a_programmatic_reward_with_bounded_kl(tmp_path, data_dir, tiny_path, datasets, targets,
                                                         starts_with_target):
    cfg = make_config(tmp_path, data_dir, method="ppo", dataset=datasets["pref"], max_steps=40, learning_rate=3e-3,
                      ppo={"max_new_tokens": 4, "rollout_batch_size": 16, "mini_batch_size": 8})
    result, events = run_method(cfg, reward_fn=starts_with_target)
    rewards = [h["reward_mean"] for h in result["history"]]
    assert len(rewards) == 40
    assert mean(rewards[-10:]) > mean(rewards[:10]) + 0.15
    assert all(h["kl"] < 15 for h in result["history"])  # nats per response, 4 tokens
    for key in ("policy_loss", "value_loss", "clipfrac", "entropy", "kl", "reward_mean"):
        assert key in events.of("metrics")[-1]["metrics"]
    checkpoint = Path(result["checkpoint"])
    assert checkpoint.name == "checkpoint-40"
    assert {"adapter_model.safetensors", "value_head.safetensors", "ppo_state.pt"} <= {p.name for p in checkpoint.iterdir()}
    base, trained = first_token_mass(tiny_path, checkpoint, targets)
    assert trained > base + 0.1


def test_rloo_learns_a_programmatic_reward(tmp_path, data_dir, tiny_path, datasets, targets, starts_with_target):
    cfg = make_config(tmp_path, data_dir, method="rloo", dataset=datasets["pref"], max_steps=30, learning_rate=3e-3,
                      batch_size=16, rloo={"max_new_tokens": 4, "num_generations": 8})
    result, events = run_method(cfg, reward_fn=starts_with_target)
    rewards = [h["reward"] for h in result["history"]]
    assert len(rewards) == 30 and all(0 <= r <= 1 for r in rewards)
    # RLOO (one optimizer step per 16 samples) moves slower than our PPO (8 per 16): sampled rewards are too
    # noisy over 30 steps, so measure the policy itself: its probability of starting with a target token.
    base, trained = first_token_mass(tiny_path, result["checkpoint"], targets)
    assert trained > base + 0.02
    assert Path(result["checkpoint"]).name == "checkpoint-30"
    assert events.of("checkpoint")[-1]["kind"] == "lora"


def test_reward_model_then_ppo_then_resume(tmp_path, data_dir, datasets, reward_checkpoint):
    cfg = make_config(tmp_path, data_dir, method="ppo", dataset=datasets["pref"], max_steps=2, save_steps=1,
                      reward_checkpoint=reward_checkpoint["checkpoint"],
                      ppo={"max_new_tokens": 6, "rollout_batch_size": 4, "mini_batch_size": 2, "ppo_epochs": 1})
    result, events = run_method(cfg)
    assert [e["step"] for e in events.of("checkpoint")] == [1, 2]
    assert all(isinstance(h["reward_mean"], float) for h in result["history"])
    assert Path(result["value_head"]).is_file()

    resumed = make_config(tmp_path, data_dir, method="ppo", dataset=datasets["pref"], max_steps=3,
                          reward_checkpoint=reward_checkpoint["checkpoint"],
                          resume_from_checkpoint=str(tmp_path / "out" / "checkpoint-2"),
                          ppo={"max_new_tokens": 6, "rollout_batch_size": 4, "mini_batch_size": 2, "ppo_epochs": 1})
    result, events = run_method(resumed)
    assert [e["step"] for e in events.of("progress")] == [3]
    assert result["step"] == 3
    adapter = json.loads((Path(result["checkpoint"]) / "adapter_config.json").read_text())
    assert adapter["peft_type"] == "LORA"


def test_rloo_with_a_reward_checkpoint(tmp_path, data_dir, datasets, reward_checkpoint):
    cfg = make_config(tmp_path, data_dir, method="rloo", dataset=datasets["pref"], max_steps=2, batch_size=4,
                      reward_checkpoint=reward_checkpoint["checkpoint"], rloo={"max_new_tokens": 6, "num_generations": 2})
    result, _ = run_method(cfg)
    assert result["step"] == 2
    assert all("rewards/reward_model/mean" in h for h in result["history"])


def zero_reward(prompts, completions, completion_ids=None, **kwargs):
    return [0.0] * len(prompts)


def length_reward(prompts, completions, completion_ids=None, **kwargs):
    return [float(len(ids)) for ids in completion_ids]


def test_ppo_honours_the_schedule_and_gradient_accumulation(tmp_path, data_dir, datasets):
    import torch

    cfg = make_config(tmp_path, data_dir, method="ppo", dataset=datasets["pref"], max_steps=2, learning_rate=1e-3,
                      lr_scheduler="cosine", warmup_ratio=0.5, grad_accum=2, gradient_checkpointing=True,
                      ppo={"rollout_batch_size": 8, "mini_batch_size": 2, "ppo_epochs": 1, "max_new_tokens": 4})
    result, _ = run_method(cfg, reward_fn=length_reward)
    # 8 rollouts in minibatches of 2, an optimizer step every 2 of them: 2 steps per update, 4 in all. Cosine with
    # half of them warming up: the peak rate after the second step, zero after the fourth.
    assert [h["learning_rate"] for h in result["history"]] == pytest.approx([1e-3, 0.0])
    state = torch.load(Path(result["checkpoint"]) / "ppo_state.pt", weights_only=False)
    assert {int(s["step"]) for s in state["optimizer"]["state"].values()} == {4}
    assert state["scheduler"]["last_epoch"] == 4


def test_ppo_penalises_responses_that_never_end_by_default(tmp_path, data_dir, datasets):
    from training.engine.config import PPOSection

    assert PPOSection().missing_eos_penalty == 1.0
    cfg = make_config(tmp_path, data_dir, method="ppo", dataset=datasets["pref"], max_steps=1,
                      ppo={"rollout_batch_size": 8, "mini_batch_size": 4, "ppo_epochs": 1, "max_new_tokens": 2})
    result, _ = run_method(cfg, reward_fn=zero_reward)
    (h,) = result["history"]
    assert h["ended_fraction"] < 1 and h["reward_mean"] == pytest.approx(-(1 - h["ended_fraction"]))


def test_ppo_adaptive_kl_moves_its_coefficient_and_fixed_kl_does_not(tmp_path, data_dir, datasets):
    ppo = {"rollout_batch_size": 4, "mini_batch_size": 4, "ppo_epochs": 1, "max_new_tokens": 4, "kl_coef": 0.05}
    fixed, _ = run_method(make_config(tmp_path / "fixed", data_dir, method="ppo", dataset=datasets["pref"],
                                      max_steps=3, learning_rate=3e-3, ppo={**ppo, "kl_target": None}),
                          reward_fn=length_reward)
    assert {h["kl_coef"] for h in fixed["history"]} == {0.05}
    adaptive, _ = run_method(make_config(tmp_path / "adaptive", data_dir, method="ppo", dataset=datasets["pref"],
                                         max_steps=3, learning_rate=3e-3, ppo={**ppo, "kl_target": 100.0, "kl_horizon": 4}),
                             reward_fn=length_reward)
    # The KL stays far below 100 nats: the coefficient falls by the largest move, 20% per kl_horizon samples.
    assert [h["kl_coef"] for h in adaptive["history"]] == pytest.approx([0.05, 0.04, 0.032])


def test_ppo_refuses_settings_it_cannot_honour():
    from training.engine.config import RunConfig

    base = {"method": "ppo", "output_dir": "o", "dataset": "d", "ppo": {"rollout_batch_size": 8, "mini_batch_size": 4}}
    with pytest.raises(ValueError, match="^grad_accum: must divide the 2 minibatches"):
        RunConfig.from_dict({**base, "grad_accum": 4})
    with pytest.raises(ValueError, match="^precision: fp16 is not offered for ppo"):
        RunConfig.from_dict({**base, "precision": "fp16"})
    with pytest.raises(ValueError, match="^distributed: fsdp shards TRL trainers"):
        RunConfig.from_dict({**base, "distributed": "fsdp"})


def test_grpo_learns_a_programmatic_reward(tmp_path, data_dir, tiny_path, datasets, targets, starts_with_target):
    cfg = make_config(tmp_path, data_dir, method="grpo", dataset=datasets["pref"], max_steps=30, learning_rate=3e-3,
                      batch_size=16, grpo={"max_new_tokens": 4, "num_generations": 8})
    result, events = run_method(cfg, reward_fn=starts_with_target)
    assert len(result["history"]) == 30
    base, trained = first_token_mass(tiny_path, result["checkpoint"], targets)
    assert trained > base + 0.02
    assert Path(result["checkpoint"]).name == "checkpoint-30" and events.of("checkpoint")[-1]["kind"] == "lora"


def test_grpo_with_a_reward_checkpoint(tmp_path, data_dir, datasets, reward_checkpoint):
    cfg = make_config(tmp_path, data_dir, method="grpo", dataset=datasets["pref"], max_steps=2, batch_size=4,
                      reward_checkpoint=reward_checkpoint["checkpoint"], grpo={"max_new_tokens": 6, "num_generations": 2})
    result, _ = run_method(cfg)
    assert result["step"] == 2
    assert all("rewards/reward_model/mean" in h for h in result["history"])
    assert any("kl" in h for h in result["history"])  # beta > 0: the KL to the base is measured and penalised
