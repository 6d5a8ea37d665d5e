"""The GPU training benchmark runs (here on a CPU, with a small shape) and measures what it says it does."""
import pytest

from tests.helpers import bench_module


@pytest.fixture(scope="module")
def gpu_bench():
    return bench_module("training/gpu.py")


def test_the_half_billion_shape_is_qwen25_05b_sized(gpu_bench):
    config = gpu_bench.model_config("0.5b", 512)
    counts = gpu_bench.parameter_counts(config)  # on the meta device: nothing allocated
    assert 480e6 < counts["total"] < 510e6
    # LoRA-DPO: policy forward, activation backward and reference forward over the layers and the vocabulary
    assert gpu_bench.flops_per_token("dpo", counts, config, 512) == pytest.approx(
        3 * (2 * (counts["layer_matrices"] + 896 * 151936) + 4 * 24 * 512 * 896))


@pytest.mark.slow
def test_the_benchmark_runs_lora_dpo_and_reward_on_a_small_shape(gpu_bench, tmp_path):
    data = gpu_bench.main(["--shape", "small", "--steps", "5", "--warmup", "2", "--batch-size", "4", "--seq-len", "64",
                           "--workdir", str(tmp_path), "--no-save", "--peak-tflops", "1"])
    for method in ("dpo", "reward"):
        figures = data["results"][method]
        assert figures["steps_timed"] == 3 and figures["tokens"] > 0 and figures["tokens_per_s"] > 0
        assert figures["setup"]["dtype"]["weights"] == "fp32"
        assert 0 < figures["mfu"] < 1  # against a made-up 1 TFLOP/s device
    assert data["results"]["dpo"]["model_flops_per_token"] > data["results"]["reward"]["model_flops_per_token"]
