"""Arena figures: how soon a battle's answer from a model starts to show, and what the leaderboard costs.

    OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 .venv/bin/python bench/arena/bench_arena.py [--repeat 3]

- first text: ``python -m training.engine`` with a streaming ``generate`` on the built-in tiny model (what a worker
  starts for one side of a battle), from the process start to its first ``text`` event and to its end;
- leaderboard: ``training.arena.leaderboard_compute`` (Bradley-Terry and 1,000 bootstrap resamples) for 4, 8 and
  32 sources over 200, 10,000 and 100,000 votes.

No database or broker. Results: bench/results/arena.json, with the load average.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def first_text(repeat: int) -> list[dict]:
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "prompt.jsonl").write_text(json.dumps({"prompt_id": 1, "prompt": [
            {"role": "user", "content": "Tell me about the sea."}]}) + "\n")
        config = {"method": "generate", "output_dir": str(tmp / "out"), "base_model": "tiny",
                  "data_dir": str(tmp / "data"), "dataset": str(tmp / "prompt.jsonl"), "batch_size": 1,
                  "generate": {"n": 1, "stream": True, "max_new_tokens": 128, "temperature": 0.7}}
        (tmp / "config.json").write_text(json.dumps(config))
        subprocess.run([sys.executable, "-m", "training.engine", str(tmp / "config.json")], cwd=ROOT,
                       capture_output=True, check=True)  # builds the tiny model once, outside the timings
        for _ in range(repeat):
            start = time.monotonic()
            proc = subprocess.Popen([sys.executable, "-m", "training.engine", str(tmp / "config.json")], cwd=ROOT,
                                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            first, events = None, 0
            for line in proc.stdout:
                event = json.loads(line)
                if event["event"] == "text":
                    events += 1
                    first = first or time.monotonic() - start
            proc.wait()
            out.append({"first_text_s": round(first, 2), "total_s": round(time.monotonic() - start, 2),
                        "text_events": events})
    return out


def leaderboard(repeat: int) -> list[dict]:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from training.arena import leaderboard_compute

    out = []
    for sources, votes in ((4, 200), (8, 10_000), (32, 100_000)):
        rng = random.Random(0)
        names = [f"model-{i}" for i in range(sources)]
        strength = {name: rng.gauss(0, 1) for name in names}
        rows = []
        for _ in range(votes):
            a, b = rng.sample(names, 2)
            p = 1 / (1 + pow(2.718281828, strength[b] - strength[a]))
            r = rng.random()
            rows.append((a, b, "tie" if abs(r - p) < 0.05 else "A" if r < p else "B"))
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            leaderboard_compute(names, rows)
            times.append(time.perf_counter() - start)
        out.append({"sources": sources, "votes": votes, "best_s": round(min(times), 3),
                    "median_s": round(statistics.median(times), 3)})
    return out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    load = os.getloadavg()
    result = {"load_average": [round(x, 2) for x in load], "first_text": first_text(args.repeat),
              "leaderboard": leaderboard(args.repeat), "when": time.strftime("%Y-%m-%d %H:%M")}
    results = ROOT / "bench" / "results"
    results.mkdir(exist_ok=True)
    (results / "arena.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
