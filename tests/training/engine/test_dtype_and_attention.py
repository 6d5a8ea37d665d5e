"""One dtype policy (fp32 master weights whatever the checkpoint's dtype; bf16 autocast only where the device has
it), the attention implementation, and packing that keeps packed sequences apart."""

from pathlib import Path

import pytest
import torch

from tests.helpers import make_config, run_method


@pytest.fixture(scope="module")
def bf16_base(tmp_path_factory, tiny_path):
    """The tiny model saved in bf16, as most Hub checkpoints are."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = tmp_path_factory.mktemp("bf16") / "tiny-bf16"
    AutoModelForCausalLM.from_pretrained(tiny_path, dtype=torch.bfloat16).save_pretrained(path)
    AutoTokenizer.from_pretrained(tiny_path).save_pretrained(path)
    return path


def weights(path):
    from safetensors.torch import load_file

    files = sorted(Path(path).glob("*.safetensors"))
    return {k: v for f in files for k, v in load_file(str(f)).items()}


def test_full_dpo_on_a_bf16_checkpoint_trains_fp32_masters_at_the_default_rate(tmp_path, data_dir, datasets, bf16_base):
    cfg = make_config(tmp_path, data_dir, method="dpo", dataset=datasets["pref"], max_steps=10, adapter="full",
                      base_model=str(bf16_base))
    assert cfg.lr == 1e-6  # the default for a full fine-tune
    result, events = run_method(cfg)
    assert result["dtype"] == {"weights": "fp32", "compute": "fp32", "base": "fp32"}
    before, after = weights(bf16_base), weights(result["checkpoint"])
    assert all(after[k].dtype == torch.float32 for k in after)
    changed = sum(int((after[k] != before[k].float()).sum()) for k in before)
    total = sum(v.numel() for v in before.values())
    # Pure bf16 weights at lr 1e-6 keep all but 0.09% of their values: an update is below bf16's resolution.
    assert changed / total > 0.5


def test_lora_reward_under_bf16_compute_keeps_adapter_and_score_head_in_fp32(tmp_path, data_dir, datasets):
    cfg = make_config(tmp_path, data_dir, method="reward", dataset=datasets["pref"], max_steps=2, precision="bf16")
    result, events = run_method(cfg)
    assert result["dtype"] == {"weights": "fp32", "compute": "bf16", "base": "bf16"}
    saved = weights(result["checkpoint"])
    assert any(".score." in k for k in saved)
    assert {str(v.dtype) for v in saved.values()} == {"torch.float32"}


def test_qlora_compute_dtype_and_trainable_weights_follow_the_policy(tmp_path, data_dir, datasets):
    from training.engine.common import dtype_policy, quantization_config

    fp32 = make_config(tmp_path, data_dir, method="dpo", dataset=datasets["pref"], adapter="qlora", max_steps=2)
    assert quantization_config(fp32).bnb_4bit_compute_dtype == torch.float32  # CPU: fp32 compute
    bf16 = make_config(tmp_path, data_dir, method="dpo", dataset=datasets["pref"], adapter="qlora", precision="bf16")
    assert quantization_config(bf16).bnb_4bit_compute_dtype == torch.bfloat16
    assert dtype_policy(bf16).as_dict() == {"weights": "fp32", "compute": "bf16", "base": "nf4"}

    result, _ = run_method(fp32)
    assert {str(v.dtype) for v in weights(result["checkpoint"]).values()} == {"torch.float32"}


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_packed_sequences_keep_their_own_logits(tiny_path, attn):
    """A packed row's logits equal the same row alone, through the forward packed SFT batches take. With the KV
    cache on (what a plain `model(ids)` call does) the same packed input mixes the rows: the check must not be
    fooled by that path, nor pass a path that mixes."""
    from transformers import AutoModelForCausalLM

    from training.engine.sft import packing_leak

    model = AutoModelForCausalLM.from_pretrained(tiny_path, attn_implementation=attn)
    assert packing_leak(model) < 1e-4
    ids = torch.tensor([list(range(11, 19)) + list(range(31, 37))])
    positions = torch.tensor([list(range(8)) + list(range(6))])
    with torch.no_grad():
        cached = model.eval()(input_ids=ids, position_ids=positions, use_cache=True).logits[0, 8:]
        alone = model(input_ids=torch.tensor([list(range(31, 37))]), use_cache=False).logits[0]
    assert (cached - alone).abs().max() > 1.0


def test_packing_is_refused_where_the_attention_mixes_packed_rows(tmp_path, tiny_path):
    from transformers import AttentionInterface, AutoModelForCausalLM
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    from training.engine.sft import check_packing_keeps_sequences_apart

    def causal_over_everything(module, query, key, value, attention_mask, **kwargs):
        return sdpa_attention_forward(module, query, key, value, None, **kwargs)  # ignores row boundaries

    AttentionInterface.register("causal_over_everything", causal_over_everything)
    model = AutoModelForCausalLM.from_pretrained(tiny_path, attn_implementation="causal_over_everything")
    with pytest.raises(ValueError, match=r"^sft\.packing: .*attend to each other"):
        check_packing_keeps_sequences_apart(model)


def test_sft_with_packing_trains_and_attention_is_a_run_setting(tmp_path, data_dir, datasets):
    from training.engine.config import RunConfig

    cfg = make_config(tmp_path, data_dir, method="sft", dataset=datasets["messages"], max_steps=2,
                      attn_implementation="eager", sft={"packing": True})
    result, events = run_method(cfg)
    assert result["step"] == 2 and result["attn_implementation"] == "eager"
    with pytest.raises(ValueError, match="^attn_implementation: must be one of"):
        RunConfig.from_dict({"method": "sft", "output_dir": "o", "dataset": "d", "attn_implementation": "flash"})
    with pytest.raises(ValueError, match="^sft.packing: cannot be used with adapter prompt_tuning"):
        RunConfig.from_dict({"method": "sft", "output_dir": "o", "dataset": "d", "adapter": "prompt_tuning",
                             "sft": {"packing": True}})
