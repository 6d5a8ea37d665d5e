"""Training through our runs (Celery worker + engine process) against a plain TRL script, on the same data and model.

1. overhead: DPO and reward training, each run --repeat times - `plain_trl.py` as one process, and a run created with
   `run_create` and executed by a real `celery worker -P solo -c 1` over Redis and PostgreSQL. Wall time is measured
   from the start of the process (plain) / from the run's creation (ours) to the end of training as seen by the
   caller (process exit / status `succeeded` seen by polling). Reports the wall-time ratio (fastest of --repeat
   alternated runs on each side: the box is shared), the CPU-time ratio of the training process, and both final
   losses.
2. memory: peak resident memory of the engine process for DPO with LoRA (the reference is the base with adapters
   off) against full DPO (a frozen reference copy), on a ~27M-parameter random Llama in a local directory, which
   also exercises "a local directory as a base model".

    OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 .venv/bin/python bench/training/bench_runs.py [--steps 200] [--repeat 2]

Uses its own database (DATABASE_URL, default postgres://postgres@127.0.0.1:5432/h5bench) and Redis db
(CELERY_BROKER_URL, default redis://127.0.0.1:6379/5). Results go to bench/results/training_runs.json.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from common import ROOT, bench_env, recreate_database, setup_django, write_result  # noqa: E402

HERE = Path(__file__).resolve().parent
TOPICS = ["rain", "cats", "tea", "maps", "bread", "stars", "rivers", "clocks", "paper", "glass", "music", "snow"]


def write_pairs(path: Path, n: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        for i in range(n):
            topic = TOPICS[i % len(TOPICS)]
            f.write(json.dumps({
                "prompt": [{"role": "user", "content": f"Tell me about {topic}, please ({i})."}],
                "chosen": [{"role": "assistant", "content": f"Gladly. Here is a short, kind note about {topic}."}],
                "rejected": [{"role": "assistant", "content": f"No. {topic} {topic} {topic}."}],
                "margin": float(1 + i % 3),
            }) + "\n")
    return path


def start_worker(env: dict, log_path: Path) -> subprocess.Popen:
    subprocess.run([sys.executable, "-m", "celery", "-A", "config", "purge", "-f", "-Q", "training,default"],
                   cwd=ROOT, env=env, check=True, capture_output=True)
    log = open(log_path, "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", "training,default", "-c", "1", "-P", "solo",
         "-l", "INFO", "--without-gossip", "--without-mingle", "--without-heartbeat", "-n", "bench@%h"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while "ready." not in log_path.read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"worker did not start:\n{log_path.read_text()[-3000:]}")
        time.sleep(0.2)
    return proc


def plain(method: str, model_dir: Path, data: Path, out: Path, steps: int, batch: int, lr: float, env: dict) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "plain_trl.py"), "--method", method, "--model", str(model_dir), "--data", str(data),
         "--out", str(out), "--steps", str(steps), "--batch", str(batch), "--lr", str(lr)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    stdout = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"plain {method} failed")
    result = json.loads(stdout.strip().splitlines()[-1])
    return {"wall_s": round(wall, 2), "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
            "peak_rss_mb": round(usage.ru_maxrss / 1024, 1), **result}


def ours(method: str, snapshot, steps: int, batch: int, lr: float, base_model=None, adapter: str = "lora") -> dict:
    from training import services
    from training.models import TrainingRun

    config = {"max_steps": steps, "batch_size": batch, "learning_rate": lr, "max_length": 128, "eval_fraction": 0.0,
              "logging_steps": 1, "adapter": adapter}
    start = time.perf_counter()
    run, _ = services.run_create(method=method, base_model=base_model or services.base_model_get(name="tiny"),
                              snapshot=snapshot, config=config)
    while True:
        status = TrainingRun.objects.values_list("status", flat=True).get(pk=run.pk)
        if status in ("succeeded", "failed", "cancelled"):
            break
        time.sleep(0.05)
    wall = time.perf_counter() - start
    run.refresh_from_db()
    if status != "succeeded":
        raise SystemExit(f"run {run.pk} {status}: {run.error}")
    return {"wall_s": round(wall, 2), "cpu_s": run.result.get("cpu_s"), "first_loss": run.result.get("first_loss"),
            "final_loss": run.result.get("final_loss"), "peak_rss_mb": run.result.get("peak_rss_mb"),
            "queue_s": round((run.started_at - run.created_at).total_seconds(), 3), "run": run.pk}


def build_mid_model(data_dir: Path) -> Path:
    """A ~27M-parameter random Llama with the tiny tokenizer, saved as a local model directory."""
    target = data_dir / "models" / "bench-llama-27m"
    if (target / "model.safetensors").is_file():
        return target
    code = f"""
import torch
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM
from training.engine.tiny import ensure_tiny_model, tiny_model_dir
tiny = ensure_tiny_model(tiny_model_dir({str(data_dir)!r}))
tok = AutoTokenizer.from_pretrained(tiny)
torch.manual_seed(0)
cfg = LlamaConfig(vocab_size=len(tok), hidden_size=512, intermediate_size=1408, num_hidden_layers=8,
                  num_attention_heads=8, num_key_value_heads=8, max_position_embeddings=512,
                  pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
model = LlamaForCausalLM(cfg)
print(sum(p.numel() for p in model.parameters()))
model.save_pretrained({str(target)!r}); tok.save_pretrained({str(target)!r})
"""
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
    return target


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--rows", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--memory-steps", type=int, default=4)
    parser.add_argument("--concurrent", action="store_true",
                        help="run each plain/ours pair at the same time (one core each) instead of one after the other")
    parser.add_argument("--skip-memory", action="store_true")
    args = parser.parse_args()

    env = bench_env("h5bench")
    env["PS_VAR_DIR"] = os.environ.get("PS_BENCH_VAR_DIR", str(ROOT / "var" / "bench-training"))  # runs/ is wiped
    env["CELERY_BROKER_URL"] = os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/5")
    env["HF_HUB_OFFLINE"] = "1"
    recreate_database(env)
    setup_django(env)
    from django.conf import settings

    from annotation.models import Project
    from training import services
    from training.models import DatasetSnapshot

    data_dir = Path(settings.PS_DATA_DIR)
    shutil.rmtree(data_dir / "runs", ignore_errors=True)
    pairs = write_pairs(data_dir / "snapshots" / "bench-pairs.jsonl", args.rows)
    project = Project.objects.create(name="bench", slug="bench", mode="pairwise", config={})
    snapshot = DatasetSnapshot.objects.create(project=project, path=str(pairs.relative_to(data_dir)), sha256="-",
                                              kind="trl", style="conversational", format="jsonl", row_count=args.rows)
    subprocess.run([sys.executable, "-c", f"from training.engine.tiny import ensure_tiny_model, tiny_model_dir;"
                    f"ensure_tiny_model(tiny_model_dir({str(data_dir)!r}))"], cwd=ROOT, env=env, check=True)
    tiny_dir = next((data_dir / "models").glob("tiny-v*"))

    worker = start_worker(env, data_dir / "bench-worker.log")
    results: dict = {"concurrent": args.concurrent, "steps": args.steps, "batch": args.batch, "rows": args.rows, "model": "tiny (built-in)",
                     "overhead": {}, "memory": {}}
    try:
        for method, lr in (("dpo", 5e-5), ("reward", 5e-4)):
            plain_runs, our_runs = [], []
            for i in range(args.repeat):  # alternate, so drift in machine load hits both sides alike
                plain_args = (method, tiny_dir, pairs, data_dir / "plain" / method, args.steps, args.batch, lr, env)
                if args.concurrent:  # side by side: both see the same load from the rest of the machine
                    with concurrent.futures.ThreadPoolExecutor(1) as pool:
                        plain_future = pool.submit(plain, *plain_args)
                        our_runs.append(ours(method, snapshot, args.steps, args.batch, lr))
                        plain_runs.append(plain_future.result())
                else:
                    plain_runs.append(plain(*plain_args))
                    our_runs.append(ours(method, snapshot, args.steps, args.batch, lr))
                print(method, i, plain_runs[-1], our_runs[-1], flush=True)
            # The box is shared: the fastest of the repeats is the least disturbed one on each side.
            plain_wall, our_wall = min(r["wall_s"] for r in plain_runs), min(r["wall_s"] for r in our_runs)
            plain_cpu, our_cpu = min(r["cpu_s"] for r in plain_runs), min(r["cpu_s"] for r in our_runs)
            results["overhead"][method] = {
                "plain_wall_s": plain_wall, "ours_wall_s": our_wall, "ratio": round(our_wall / plain_wall, 3),
                "median_ratio": round(statistics.median(r["wall_s"] for r in our_runs)
                                      / statistics.median(r["wall_s"] for r in plain_runs), 3),
                "paired_ratio_median": round(statistics.median(
                    o["wall_s"] / p["wall_s"] for o, p in zip(our_runs, plain_runs)), 3),
                "plain_cpu_s": plain_cpu, "ours_engine_cpu_s": our_cpu, "cpu_ratio": round(our_cpu / plain_cpu, 3),
                "plain_final_loss": plain_runs[-1]["final_loss"], "ours_final_loss": our_runs[-1]["final_loss"],
                "plain": plain_runs, "ours": our_runs,
            }

        if not args.skip_memory:
            mid = build_mid_model(data_dir)
            base = services.base_model_register(name="bench-llama-27m", source=str(mid))
            for adapter in ("lora", "full"):
                run = ours("dpo", snapshot, args.memory_steps, 4, 1e-5, base_model=base, adapter=adapter)
                results["memory"][f"dpo_{adapter}"] = run
                print("memory", adapter, run, flush=True)
            results["memory"]["model"] = "random Llama, 8 layers, hidden 512, ~27M parameters, fp32, local directory"
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(timeout=30)
    write_result("training_runs_concurrent" if args.concurrent else "training_runs", results)


if __name__ == "__main__":
    main()
