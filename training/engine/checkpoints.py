"""Self-contained checkpoints: what a checkpoint directory holds and how it names its base model.

A checkpoint directory is read in two ways. Inference (a download, vLLM, `AutoPeftModelForCausalLM`) needs the
adapter or model weights, their config and the tokenizer; resuming a run needs the training state as well
(optimizer, scheduler, RNG, trainer state, PPO's value head). A download holds the first kind unless the
training state is asked for.

peft writes the base model's path as it was loaded into `adapter_config.json`, which for a local or built-in base
is a path on the server. The engine rewrites it to a name that means something elsewhere: the Hub id for a Hub
model; otherwise the base's name (`tiny`, or the local directory's name), with `base_model.json` beside it
carrying the sha256 of each of the base's files, so whoever loads the adapter can check they have the same base.

This module imports nothing heavy (the web app filters downloads with it).
"""

from __future__ import annotations

import fnmatch
import functools
import hashlib
import json
import os
from pathlib import Path

BASE_MANIFEST = "base_model.json"

# Files a run writes for resuming only.
TRAINING_STATE = (
    "optimizer.pt", "optimizer.bin", "scheduler.pt", "scaler.pt", "rng_state*.pth", "trainer_state.json",
    "training_args.bin", "ppo_state.pt", "value_head.safetensors", "global_step*",
)
BUILTIN_MODELS = ("tiny", "small")


def is_training_state(relative_path: str | os.PathLike) -> bool:
    """Whether a file of a checkpoint directory is training state rather than something inference needs."""
    return any(fnmatch.fnmatch(part, pattern) for part in Path(relative_path).parts for pattern in TRAINING_STATE)


def base_reference(base_model: str) -> dict:
    """How a checkpoint names the base model a run was given: {"name", "hub_id"} (hub_id None: a built-in model or a
    local directory, which only its name and digests identify)."""
    if base_model in BUILTIN_MODELS:
        return {"name": base_model, "hub_id": None}
    if os.path.isdir(base_model):
        return {"name": Path(base_model).resolve().name, "hub_id": None}
    return {"name": base_model, "hub_id": base_model}


def make_self_contained(checkpoint_dir: str | os.PathLike, base_model: str, source: str) -> None:
    """Name the base in the checkpoint by `base_reference(base_model)`, never by the server path `source` it was
    loaded from; write base_model.json with the digests of the base's files (a local or built-in base)."""
    checkpoint_dir = Path(checkpoint_dir)
    reference = base_reference(base_model)
    adapter_config = checkpoint_dir / "adapter_config.json"
    if adapter_config.is_file():
        config = json.loads(adapter_config.read_text(encoding="utf-8"))
        config["base_model_name_or_path"] = reference["name"]
        adapter_config.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    manifest = dict(reference)
    if reference["hub_id"] is None and os.path.isdir(source):
        manifest["sha256"] = base_digests(str(Path(source).resolve()))
    (checkpoint_dir / BASE_MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")


@functools.lru_cache(maxsize=4)
def base_digests(directory: str) -> dict[str, str]:
    """sha256 of each file of a base model directory (weights, config, tokenizer), computed once per process."""
    digests = {}
    for path in sorted(Path(directory).rglob("*")):
        if path.is_file() and not path.name.startswith("."):
            digest = hashlib.sha256()
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
            digests[str(path.relative_to(directory))] = digest.hexdigest()
    return digests


def adapter_base(checkpoint_dir: str | os.PathLike, *, data_dir: str | os.PathLike | None = None,
                 default: str | None = None) -> str:
    """The base model to load an adapter checkpoint on, as `from_pretrained` takes it.

    A Hub id or built-in name written by `make_self_contained` resolves by itself; a local base (named only by its
    directory's name) is `default`, the path the server knows it by. Older checkpoints name an absolute path.
    """
    from .tiny import resolve_model_source

    checkpoint_dir = Path(checkpoint_dir)
    name = json.loads((checkpoint_dir / "adapter_config.json").read_text(encoding="utf-8"))["base_model_name_or_path"]
    manifest_path = checkpoint_dir / BASE_MANIFEST
    manifest = json.loads(manifest_path.read_text(encoding="utf-8")) if manifest_path.is_file() else {}
    if manifest and manifest.get("hub_id") is None and name not in BUILTIN_MODELS:
        if default is None:
            raise ValueError(f"the adapter {checkpoint_dir} was trained on a local base model named {name!r}: "
                             "give its directory as base_model")
        return default
    return resolve_model_source(name, data_dir)
