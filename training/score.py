"""Score (prompt, response) pairs with a reward checkpoint. Run as a child process, never imported by the web app
or a worker: ``python -m training.score CONFIG.json`` with

    {"reward_checkpoint": "/abs/checkpoint-40", "base_model": "tiny", "data_dir": "/abs/data",
     "input": "/abs/pairs.jsonl", "output": "/abs/scores.jsonl", "max_length": 512}

``input`` holds one ``{"key", "prompt": [messages], "completion": "text"}`` per line; ``output`` gets one
``{"key", "score"}`` per line, written to a temporary name and renamed when complete. It prints the same JSON-lines
events as the engine (``progress``, then ``done`` with the count, or ``error``).
"""
from __future__ import annotations

import json
import logging
import os
import sys
import time
import traceback
from pathlib import Path

BATCH = 32


def emit(event: str, **fields) -> None:
    sys.stdout.write(json.dumps({"event": event, **fields, "time": round(time.time(), 3)}) + "\n")
    sys.stdout.flush()


def score(config: dict) -> dict:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    import torch

    from training.engine.common import is_adapter_dir
    from training.engine.rewards import RewardModelScorer
    from training.engine.tiny import resolve_model_source

    if not torch.cuda.is_available():
        torch.set_num_threads(1)
    rows = []
    with open(config["input"], encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    checkpoint = config["reward_checkpoint"]
    base = resolve_model_source(config["base_model"], config["data_dir"]) if is_adapter_dir(checkpoint) else None
    scorer = RewardModelScorer(checkpoint, base=base, max_length=int(config.get("max_length", 512)))
    total = max(1, -(-len(rows) // BATCH))
    emit("started", method="score", total_steps=total)
    out = Path(config["output"])
    partial = out.with_name(out.name + ".partial")
    with open(partial, "w", encoding="utf-8") as f:
        for step in range(total):
            chunk = rows[step * BATCH:(step + 1) * BATCH]
            if chunk:
                scores = scorer([r["prompt"] for r in chunk], [r["completion"] for r in chunk])
                for row, value in zip(chunk, scores):
                    f.write(json.dumps({"key": row["key"], "score": float(value)}) + "\n")
            emit("progress", step=step + 1, total=total, eta_s=None)
    partial.replace(out)
    return {"scored": len(rows), "path": str(out)}


def main(argv: list[str]) -> int:
    try:
        with open(argv[0], encoding="utf-8") as f:
            config = json.load(f)
        emit("done", result=score(config))
        return 0
    except Exception as exc:
        emit("error", message=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc())
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
