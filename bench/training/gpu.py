"""Training throughput on a GPU: tokens/s, peak GPU memory and MFU for LoRA-DPO and LoRA reward training.

The model is built from a config with random weights (nothing is downloaded): `--shape 0.5b` is shaped like
Qwen2.5-0.5B (24 layers, hidden 896, 14 heads / 2 KV heads, MLP 4864, vocabulary 151,936, tied embeddings);
`--shape small` is a toy for CPUs and the tests. Each method runs through the engine itself (`train_dpo`,
`train_reward`: its dtype policy, attention choice and TRL trainers), on synthetic pairs whose prompt and
responses fill `--seq-len` tokens, for `--steps` optimizer steps.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/training/gpu.py [--shape 0.5b] [--steps 30] [--batch-size 8]
        [--seq-len 512] [--methods dpo,reward] [--peak-tflops 989]

Figures, per method:
- tokens_per_s: tokens through the policy (TRL's own `num_tokens`, padding excluded) per second of training,
  over the steps after the first `--warmup` (the first ones compile kernels and warm the allocator);
- peak_gpu_mem_gib: `torch.cuda.max_memory_allocated()` over the run (on a CPU, the process's peak RSS instead);
- mfu: model FLOPs per second over the GPU's peak dense bf16 FLOPs (a table of known GPUs, or `--peak-tflops`).
  Model FLOPs per token are counted for what each method computes: a forward pass is 2 FLOPs per weight
  multiplied (every linear layer, and the vocabulary projection when logits are computed) plus attention's
  4 x layers x seq_len x hidden. LoRA-DPO does a policy forward, the backward through the activations (about one
  forward again: the frozen weights get no gradient) and the reference forward (adapters off): 3 forwards.
  LoRA reward training does a forward and the activation backward, 2 forwards, with a one-output head instead
  of the vocabulary projection. LoRA's own matrices are left out (under 1%).

Results go to bench/results/training_gpu.json and are printed.
"""
from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
logging.getLogger("bitsandbytes").setLevel(logging.ERROR)

SHAPES = {
    # Qwen2.5-0.5B's shape
    "0.5b": dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                 num_key_value_heads=2, vocab_size=151936, tie_word_embeddings=True),
    # a toy for CPUs and the tests
    "small": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, vocab_size=1024, tie_word_embeddings=True),
}
# Dense bf16 tensor-core peak, FLOP/s (no sparsity), by a substring of torch.cuda.get_device_name().
PEAK_BF16_FLOPS = {"H200": 989e12, "H100": 989e12, "GH200": 989e12, "A100": 312e12, "L40S": 362e12, "L40": 181e12,
                   "L4": 121e12, "A10G": 70e12, "A10": 125e12, "RTX 4090": 165e12, "RTX 3090": 71e12, "V100": 125e12}


def model_config(shape: str, seq_len: int):
    from transformers import Qwen2Config

    return Qwen2Config(**SHAPES[shape], max_position_embeddings=max(seq_len * 2, 1024), rope_theta=1e6,
                       rms_norm_eps=1e-6, bos_token_id=1, eos_token_id=2, pad_token_id=0)


def parameter_counts(config) -> dict[str, int]:
    """Weights multiplied per token: the decoder layers' linear layers, and the vocabulary projection."""
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    total = sum(p.numel() for p in model.parameters())
    layers = sum(p.numel() for name, p in model.named_parameters() if ".layers." in name and p.dim() == 2)
    return {"total": total, "layer_matrices": layers, "vocab_projection": config.hidden_size * config.vocab_size}


def flops_per_token(method: str, counts: dict, config, seq_len: int) -> float:
    attention = 4 * config.num_hidden_layers * seq_len * config.hidden_size
    if method == "dpo":
        return 3 * (2 * (counts["layer_matrices"] + counts["vocab_projection"]) + attention)
    return 2 * (2 * (counts["layer_matrices"] + config.hidden_size) + attention)


def build_model(path: Path, shape: str, seq_len: int) -> dict:
    """A random model of the shape with the built-in tokenizer (its ids fit any vocabulary here)."""
    import torch
    from transformers import AutoModelForCausalLM

    from training.engine.tiny import build_tokenizer

    config = model_config(shape, seq_len)
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16).save_pretrained(path)
    build_tokenizer().save_pretrained(path)
    return parameter_counts(config)


def write_pairs(path: Path, tokenizer_dir: Path, rows: int, seq_len: int) -> Path:
    """Pairs whose prompt takes a quarter of seq_len tokens and each response the rest (a little under)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    words = ["rain", "cats", "tea", "maps", "bread", "stars", "rivers", "clocks", "paper", "glass", "music", "snow"]
    rng = random.Random(0)

    def text(tokens: int) -> str:
        ids = tokenizer(" ".join(rng.choice(words) for _ in range(tokens)), add_special_tokens=False)["input_ids"]
        return tokenizer.decode(ids[:tokens])

    prompt_len, response_len = seq_len // 4, seq_len * 3 // 4 - 16  # room for the chat template's tokens
    with open(path, "w") as f:
        for _ in range(rows):
            f.write(json.dumps({"prompt": [{"role": "user", "content": text(prompt_len)}],
                                "chosen": [{"role": "assistant", "content": text(response_len)}],
                                "rejected": [{"role": "assistant", "content": text(response_len)}]}) + "\n")
    return path


def run_method(method: str, model_dir: Path, dataset: Path, out: Path, args) -> dict:
    import torch

    from training.engine.cli import METHOD_FUNCTIONS
    from training.engine.common import run_setup, setup_runtime
    from training.engine.config import RunConfig
    from training.engine.events import Reporter

    import importlib

    cfg = RunConfig.from_dict({
        "method": method, "base_model": str(model_dir), "dataset": str(dataset), "output_dir": str(out),
        "adapter": "lora", "lora_r": 16, "lora_alpha": 32, "max_steps": args.steps, "batch_size": args.batch_size,
        "max_length": args.seq_len, "eval_fraction": 0.0, "logging_steps": 1, "learning_rate": 1e-4,
        "gradient_checkpointing": args.gradient_checkpointing, "threads": args.threads,
    })
    reporter = Reporter(echo=False)
    setup_runtime(cfg)
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    module, function = METHOD_FUNCTIONS[method]
    getattr(importlib.import_module(module), function)(cfg, reporter)
    logged = [e for e in reporter.of("metrics") if "num_tokens" in e["metrics"]]
    first, last = logged[args.warmup - 1], logged[-1]
    seconds = last["time"] - first["time"]
    tokens = last["metrics"]["num_tokens"] - first["metrics"]["num_tokens"]
    if torch.cuda.is_available():
        peak = {"peak_gpu_mem_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2)}
    else:
        peak = {"peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)}
    return {"steps_timed": last["step"] - first["step"], "seconds": round(seconds, 3), "tokens": int(tokens),
            "tokens_per_s": round(tokens / seconds, 1) if seconds > 0 else None,
            "s_per_step": round(seconds / max(last["step"] - first["step"], 1), 4), **peak,
            "setup": run_setup(cfg)}


def peak_flops(args) -> tuple[float | None, str]:
    import torch

    if args.peak_tflops:
        return args.peak_tflops * 1e12, "--peak-tflops"
    if not torch.cuda.is_available():
        return None, "cpu"
    name = torch.cuda.get_device_name()
    for key, value in PEAK_BF16_FLOPS.items():
        if key in name:
            return value, name
    return None, name


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=sorted(SHAPES), default="0.5b")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5, help="steps left out of the timing")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=512)
    parser.add_argument("--methods", default="dpo,reward")
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: the engine's, 1 on CPU)")
    parser.add_argument("--peak-tflops", type=float, default=None, help="the device's peak dense bf16 TFLOP/s")
    parser.add_argument("--workdir", default=None, help="where the model and data go (default: a temp dir)")
    parser.add_argument("--no-save", action="store_true", help="print only, no bench/results file")
    args = parser.parse_args(argv)
    if args.steps <= args.warmup:
        parser.error("--steps must be more than --warmup")

    import torch

    work = Path(args.workdir or tempfile.mkdtemp(prefix="gpu-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    model_dir = work / f"model-{args.shape}"
    counts = build_model(model_dir, args.shape, args.seq_len)
    dataset = write_pairs(work / "pairs.jsonl", model_dir, args.batch_size * args.steps, args.seq_len)
    peak, device_name = peak_flops(args)
    config = model_config(args.shape, args.seq_len)
    results = {}
    for method in args.methods.split(","):
        figures = run_method(method, model_dir, dataset, work / f"out-{method}", args)
        per_token = flops_per_token(method, counts, config, args.seq_len)
        figures["model_flops_per_token"] = per_token
        figures["mfu"] = (round(per_token * figures["tokens_per_s"] / peak, 4)
                          if peak and figures["tokens_per_s"] else None)
        results[method] = figures
        gc.collect()
    data = {
        "device": device_name, "peak_flops": peak, "torch": torch.__version__,
        "shape": args.shape, "parameters": counts["total"], "steps": args.steps, "warmup": args.warmup,
        "batch_size": args.batch_size, "seq_len": args.seq_len, "gradient_checkpointing": args.gradient_checkpointing,
        "results": results,
    }
    if args.no_save:
        print(json.dumps(data, indent=2))
    else:
        from common import write_result

        write_result("training_gpu", data)
    return data


if __name__ == "__main__":
    main()
