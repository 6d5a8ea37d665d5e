"""Merge a peft adapter into its base and save a full model directory. Run as a child process, never imported by
the web app or a worker: ``python -m training.merge CONFIG.json`` with

    {"adapter": "/abs/checkpoint-40", "output_dir": "/abs/checkpoint-40-merged", "base_model": "tiny",
     "data_dir": "/abs/data", "task": "causal" | "seq_cls"}

It prints the same JSON-lines events as the engine (``done`` with the merged size, or ``error``).
"""
from __future__ import annotations

import json
import logging
import sys
import time
import traceback
from pathlib import Path


def emit(event: str, **fields) -> None:
    sys.stdout.write(json.dumps({"event": event, **fields, "time": round(time.time(), 3)}) + "\n")
    sys.stdout.flush()


def merge(config: dict) -> dict:
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    import torch

    from training.engine.merge import merge_adapter
    from training.engine.tiny import resolve_model_source

    torch.set_num_threads(1)
    base = resolve_model_source(config["base_model"], config["data_dir"])
    out = Path(config["output_dir"])
    partial = out.with_name(out.name + ".partial")  # renamed into place only once complete
    merge_adapter(config["adapter"], str(partial), base=base, task=config.get("task", "causal"))
    partial.rename(out)
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    return {"path": str(out), "size_bytes": size}


def main(argv: list[str]) -> int:
    try:
        with open(argv[0], encoding="utf-8") as f:
            config = json.load(f)
        emit("started", method="merge", total_steps=None)
        emit("done", result=merge(config))
        return 0
    except Exception as exc:
        emit("error", message=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc())
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
