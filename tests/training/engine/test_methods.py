"""Each method trains for real for a few steps on the tiny model and leaves a usable checkpoint."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.helpers import make_config, run_method

pytestmark = []

REPO = Path(__file__).resolve().parents[3]


def assert_trained(result, events, steps, kind="lora"):
    assert result["step"] == steps
    assert math.isfinite(result["final_loss"])
    checkpoint = Path(result["checkpoint"])
    assert checkpoint.name == f"checkpoint-{steps}" and checkpoint.is_dir()
    names = [e["event"] for e in events.events if e["event"] != "data_stats"]
    assert names[0] == "started" and names[-1] == "checkpoint"
    assert [e["step"] for e in events.of("progress")] == list(range(1, steps + 1))
    final = events.of("checkpoint")[-1]
    assert final["step"] == steps and final["kind"] == kind and final["size_bytes"] > 0
    if kind == "lora":
        assert (checkpoint / "adapter_model.safetensors").is_file()
    return checkpoint


def test_reward_lora_uses_margins_and_reports_held_out_accuracy(reward_checkpoint):
    from training.engine.scoring import RewardModelScorer

    assert reward_checkpoint["step"] == 30 and reward_checkpoint["eval_rows"] == 12
    assert 0.0 <= reward_checkpoint["accuracy"] <= 1.0
    assert reward_checkpoint["final_loss"] < reward_checkpoint["first_loss"]
    scorer = RewardModelScorer(reward_checkpoint["checkpoint"], base=reward_checkpoint["base_model"])
    prompt = [{"role": "user", "content": "people time year"}]
    good, bad = scorer([prompt, prompt], ["good world life thanks", "bad world life sorry"])
    assert good > bad


def test_dpo_lora(tmp_path, data_dir, datasets):
    cfg = make_config(tmp_path, data_dir, method="dpo", dataset=datasets["pref"], max_steps=6, learning_rate=5e-4)
    result, events = run_method(cfg)
    assert_trained(result, events, 6)
    assert "eval_rewards/accuracies" in result["eval"]


def test_lora_on_every_linear_layer(tmp_path, data_dir, datasets):
    """`lora_target_modules: "all-linear"` (peft's name for every linear layer but the head) is taken as written."""
    from safetensors.torch import load_file

    cfg = make_config(tmp_path, data_dir, method="dpo", dataset=datasets["pref"], max_steps=2,
                      lora_target_modules="all-linear")
    result, events = run_method(cfg)
    checkpoint = assert_trained(result, events, 2)
    names = load_file(str(Path(checkpoint) / "adapter_model.safetensors")).keys()
    assert any("mlp" in n for n in names) and any("self_attn" in n for n in names)


def test_dpo_full_with_precomputed_reference_and_ipo_loss(tmp_path, data_dir, datasets):
    from transformers import AutoModelForCausalLM

    cfg = make_config(tmp_path, data_dir, method="dpo", dataset=datasets["pref_text"], max_steps=3,
                      adapter="full", learning_rate=1e-4, dpo={"loss_type": "ipo", "precompute_ref_log_probs": True})
    result, events = run_method(cfg)
    checkpoint = assert_trained(result, events, 3, kind="full")
    AutoModelForCausalLM.from_pretrained(checkpoint)


def test_kto_lora(tmp_path, data_dir, datasets):
    cfg = make_config(tmp_path, data_dir, method="kto", dataset=datasets["kto"], max_steps=4, learning_rate=5e-4)
    result, events = run_method(cfg)
    assert_trained(result, events, 4)
    assert result["desirable_rows"] > 0


def test_sft_assistant_only_loss_on_messages_then_generate(tmp_path, data_dir, datasets):
    cfg = make_config(tmp_path, data_dir, method="sft", dataset=datasets["messages"], max_steps=8,
                      learning_rate=3e-3, sft={"assistant_only_loss": True})
    result, events = run_method(cfg)
    checkpoint = assert_trained(result, events, 8)
    assert result["final_loss"] < result["first_loss"]

    gen = make_config(tmp_path / "gen", data_dir, method="generate",
                      generate={"prompts": datasets["prompts"], "checkpoint": str(checkpoint), "n": 3,
                                "max_new_tokens": 8, "temperature": 1.0})
    out, _ = run_method(gen)
    rows = [json.loads(line) for line in open(out["path"])]
    assert len(rows) == 6 * 3 == out["responses"]
    assert rows[0]["prompt_id"] == "p0" and rows[0]["messages"][0]["role"] == "user"
    assert all(isinstance(r["response"], str) and "<|end|>" not in r["response"] for r in rows)
    assert rows[0]["params"]["temperature"] == 1.0 and rows[0]["params"]["model"] == str(checkpoint)


@pytest.mark.parametrize("method, dataset", [("sft", "pref"), ("dpo", "pref")])
def test_prompt_tuning(tmp_path, data_dir, datasets, method, dataset):
    cfg = make_config(tmp_path, data_dir, method=method, dataset=datasets[dataset], max_steps=3,
                      adapter="prompt_tuning", num_virtual_tokens=4)
    result, events = run_method(cfg)
    checkpoint = assert_trained(result, events, 3, kind="prompt_tuning")
    adapter_config = json.loads((checkpoint / "adapter_config.json").read_text())
    assert adapter_config["peft_type"] == "PROMPT_TUNING" and adapter_config["num_virtual_tokens"] == 4


def test_qlora_with_8bit_optimizer(tmp_path, data_dir, datasets):
    cfg = make_config(tmp_path, data_dir, method="dpo", dataset=datasets["pref"], max_steps=3, adapter="qlora",
                      optim="adamw_8bit", learning_rate=5e-4)
    result, events = run_method(cfg)
    checkpoint = assert_trained(result, events, 3)
    from safetensors.torch import load_file

    weights = load_file(str(checkpoint / "adapter_model.safetensors"))
    assert weights and all(torch.isfinite(w.float()).all() for w in weights.values())


def test_resume_continues_from_the_checkpoint_step(tmp_path, data_dir, datasets):
    cfg = make_config(tmp_path, data_dir, method="sft", dataset=datasets["pref"], max_steps=4, save_steps=2)
    result, events = run_method(cfg)
    assert [e["step"] for e in events.of("checkpoint")] == [2, 4]
    assert (tmp_path / "out" / "checkpoint-2" / "optimizer.pt").is_file()

    resumed = make_config(tmp_path, data_dir, method="sft", dataset=datasets["pref"], max_steps=6, save_steps=2,
                          resume_from_checkpoint=str(tmp_path / "out" / "checkpoint-4"))
    result, events = run_method(resumed)
    assert [e["step"] for e in events.of("progress")] == [5, 6]
    assert result["step"] == 6 and Path(result["checkpoint"]).name == "checkpoint-6"


def test_a_local_directory_base_model(tmp_path, data_dir, tiny_path, datasets):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    local = tmp_path / "my-model"
    AutoModelForCausalLM.from_pretrained(tiny_path).save_pretrained(local)
    AutoTokenizer.from_pretrained(tiny_path).save_pretrained(local)
    cfg = make_config(tmp_path, data_dir, method="sft", dataset=datasets["pref"], max_steps=2, base_model=str(local))
    result, events = run_method(cfg)
    checkpoint = assert_trained(result, events, 2)
    assert result["base_model"] == str(local)
    # the checkpoint names the base by its name, never by the server's path, with the digests of its files
    assert json.loads((checkpoint / "adapter_config.json").read_text())["base_model_name_or_path"] == "my-model"
    manifest = json.loads((checkpoint / "base_model.json").read_text())
    assert manifest["name"] == "my-model" and manifest["hub_id"] is None and "model.safetensors" in manifest["sha256"]
    # the engine, told the base, samples from it
    gen = make_config(tmp_path / "gen", data_dir, method="generate", base_model=str(local),
                      generate={"prompts": datasets["prompts"], "checkpoint": str(checkpoint), "n": 1,
                                "max_new_tokens": 4})
    assert run_method(gen)[0]["responses"] == 6


def test_a_builtin_base_is_named_by_its_name(tmp_path, data_dir, datasets):
    cfg = make_config(tmp_path, data_dir, method="dpo", dataset=datasets["pref"], max_steps=1)
    result, _ = run_method(cfg)
    checkpoint = Path(result["checkpoint"])
    assert json.loads((checkpoint / "adapter_config.json").read_text())["base_model_name_or_path"] == "tiny"
    assert data_dir not in (checkpoint / "adapter_config.json").read_text()
    assert json.loads((checkpoint / "base_model.json").read_text())["name"] == "tiny"


def test_merge_gives_the_adapter_logits(tmp_path, data_dir, datasets):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from training.engine.merge import merge_adapter

    cfg = make_config(tmp_path, data_dir, method="sft", dataset=datasets["pref"], max_steps=3, learning_rate=1e-2)
    result, _ = run_method(cfg)
    merged_dir = merge_adapter(result["checkpoint"], str(tmp_path / "merged"), base=result["base_model"])
    ids = torch.tensor([[1, 50, 60, 70]])
    peft_model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(result["base_model"]), result["checkpoint"])
    merged = AutoModelForCausalLM.from_pretrained(merged_dir)
    with torch.no_grad():
        assert torch.allclose(peft_model(ids).logits, merged(ids).logits, atol=1e-4)
        with peft_model.disable_adapter():
            assert not torch.allclose(peft_model(ids).logits, merged(ids).logits, atol=1e-4)


def test_merge_and_score_are_methods_of_the_one_engine(tmp_path, data_dir, datasets, reward_checkpoint):
    from transformers import AutoModelForSequenceClassification

    from tests.helpers import write_jsonl

    merge = make_config(tmp_path / "m", data_dir, method="merge", output_dir=str(tmp_path / "merged"),
                        merge={"adapter": reward_checkpoint["checkpoint"], "task": "seq_cls"})
    merged, events = run_method(merge)
    assert merged["path"] == str(tmp_path / "merged") and merged["size_bytes"] > 0
    assert not (tmp_path / "merged.partial").exists()
    AutoModelForSequenceClassification.from_pretrained(merged["path"], num_labels=1)

    prompt = [{"role": "user", "content": "people time year"}]
    rows = write_jsonl(tmp_path / "rows.jsonl", [{"key": str(i), "prompt": prompt, "completion": text}
                                                 for i, text in enumerate(["good world life thanks", "bad world life sorry"] * 3)])
    score = make_config(tmp_path / "s", data_dir, method="score", dataset=rows, batch_size=4,
                        reward_checkpoint=reward_checkpoint["checkpoint"])
    result, events = run_method(score)
    assert result["scored"] == 6 and [e["step"] for e in events.of("progress")] == [1, 2]
    scores = [json.loads(line) for line in open(result["path"])]
    assert [s["key"] for s in scores] == ["0", "1", "2", "3", "4", "5"]
    assert scores[0]["score"] > scores[1]["score"]


def test_evaluate_reward_accuracy(tmp_path, data_dir, datasets, reward_checkpoint):
    cfg = make_config(tmp_path, data_dir, method="evaluate", dataset=datasets["pref"],
                      reward_checkpoint=reward_checkpoint["checkpoint"])
    result, _ = run_method(cfg)
    assert result["n"] == 48 and result["accuracy"] > 0.7
    low, high = result["ci95"]
    assert low <= result["accuracy"] <= high and high - low < 0.5
    assert len(open(tmp_path / "out" / "evaluation.jsonl").readlines()) == 48


def test_evaluate_win_rate_with_a_confidence_interval(tmp_path, data_dir, datasets, reward_checkpoint):
    policy = make_config(tmp_path / "policy", data_dir, method="sft", dataset=datasets["pref"], max_steps=4,
                         learning_rate=1e-2)
    policy_result, _ = run_method(policy)
    for ci in ("wilson", "bootstrap"):
        cfg = make_config(tmp_path / ci, data_dir, method="evaluate", dataset=datasets["prompts"],
                          reward_checkpoint=reward_checkpoint["checkpoint"],
                          evaluate={"kind": "win_rate", "policy_checkpoint": policy_result["checkpoint"],
                                    "max_new_tokens": 8, "ci": ci})
        result, _ = run_method(cfg)
        assert result["n"] == 6 and result["wins"] + result["ties"] + result["losses"] == 6
        low, high = result["ci95"]
        assert 0 <= low <= result["win_rate"] <= high <= 1


def test_wilson_interval_known_value():
    from training.engine.evaluate import wilson_interval

    low, high = wilson_interval(8, 10)
    assert (round(low, 4), round(high, 4)) == (0.4902, 0.9433)


def test_cli_emits_json_lines_in_order(tmp_path, data_dir, datasets):
    config = {"method": "reward", "output_dir": str(tmp_path / "out"), "data_dir": data_dir,
              "dataset": datasets["pref_text"], "max_steps": 3, "save_steps": 2, "batch_size": 4}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-m", "training.engine", str(path)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    events = [json.loads(line) for line in proc.stdout.splitlines()]  # stdout is nothing but JSON lines
    names = [e["event"] for e in events]
    assert names[:3] == ["setup", "data_stats", "started"]
    assert events[0]["world_size"] == 1 and events[0]["dtype"]["weights"] == "fp32"
    assert events[2]["total_steps"] == 3 and events[2]["method"] == "reward"
    assert names[-1] == "done"
    assert [e["step"] for e in events if e["event"] == "progress"] == [1, 2, 3]
    assert [(e["step"], e["kind"]) for e in events if e["event"] == "checkpoint"] == [(2, "lora"), (3, "lora")]
    assert names.index("checkpoint") > names.index("progress")
    assert "metrics" in names and events[-1]["result"]["step"] == 3


def test_cli_reports_errors_and_exits_non_zero(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"method": "dpo", "output_dir": str(tmp_path), "dataset": "x", "bogus": 1}))
    proc = subprocess.run([sys.executable, "-m", "training.engine", str(bad)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    (event,) = [json.loads(line) for line in proc.stdout.splitlines()]
    assert event["event"] == "error" and "bogus" in event["message"]

    missing = tmp_path / "missing.json"
    missing.write_text(json.dumps({"method": "sft", "output_dir": str(tmp_path / "o"), "dataset": str(tmp_path / "nope.jsonl"),
                                   "data_dir": str(tmp_path / "d"), "base_model": str(tmp_path)}))
    proc = subprocess.run([sys.executable, "-m", "training.engine", str(missing)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    event = json.loads(proc.stdout.splitlines()[-1])
    assert event["event"] == "error" and event["traceback"]
