"""Self-contained checkpoints: a downloaded adapter names its base by Hub id (or by name, with the base's digests)
and never by a path on the server, and holds what inference needs; the training state only when asked for."""
from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from training import selectors
from training.runner import engine_command

from tests.helpers import synthetic_pairs, write_jsonl

REPO = Path(__file__).resolve().parents[2]
HUB_ID = "local-test/tiny-chat"


@pytest.fixture(scope="module")
def hub_cache(tmp_path_factory):
    """A Hugging Face cache holding the tiny model under a Hub id, as a download would leave it (used offline)."""
    from training.engine.tiny import ensure_tiny_model

    cache = tmp_path_factory.mktemp("hf-cache")
    tiny = ensure_tiny_model(tmp_path_factory.mktemp("data") / "models" / "tiny")
    repo = cache / ("models--" + HUB_ID.replace("/", "--"))
    commit = "0123456789abcdef0123456789abcdef01234567"
    shutil.copytree(tiny, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    return cache


def env(hub_cache):
    return {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(hub_cache)}


def download(checkpoint: Path, **kwargs) -> tarfile.TarFile:
    data = b"".join(selectors.checkpoint_archive(checkpoint, "run1-checkpoint", **kwargs))
    return tarfile.open(fileobj=io.BytesIO(data), mode="r:gz")


@pytest.mark.slow
def test_a_downloaded_adapter_loads_with_plain_peft_from_another_directory(tmp_path, hub_cache):
    out = tmp_path / "run"
    config = tmp_path / "engine-config.json"
    config.write_text(json.dumps({
        "method": "sft", "base_model": HUB_ID, "output_dir": str(out), "data_dir": str(tmp_path / "data"),
        "dataset": write_jsonl(tmp_path / "pairs.jsonl", synthetic_pairs(16)), "max_steps": 2, "batch_size": 4,
        "max_length": 64, "learning_rate": 1e-2, "save_steps": 1,
    }))
    proc = subprocess.run(engine_command(config), cwd=REPO, env=env(hub_cache), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    checkpoint = Path(json.loads(proc.stdout.splitlines()[-1])["result"]["checkpoint"])

    archive = download(checkpoint)
    names = {Path(n).name for n in archive.getnames()}
    assert {"adapter_model.safetensors", "adapter_config.json", "base_model.json", "tokenizer.json"} <= names
    assert not names & {"optimizer.pt", "scheduler.pt", "trainer_state.json", "training_args.bin"}
    assert not any(n.startswith("rng_state") for n in names)
    full = {Path(n).name for n in download(checkpoint, include_training_state=True).getnames()}
    assert {"optimizer.pt", "scheduler.pt", "trainer_state.json"} <= full
    # every checkpoint the run wrote names its base by Hub id, the intermediate one too
    for saved in (out / "checkpoint-1", checkpoint):
        assert json.loads((saved / "adapter_config.json").read_text())["base_model_name_or_path"] == HUB_ID
    assert str(tmp_path) not in json.dumps(json.loads((checkpoint / "adapter_config.json").read_text()))

    elsewhere = tmp_path / "elsewhere"
    archive.extractall(elsewhere, filter="data")
    script = (
        "import sys, torch\n"
        "from peft import AutoPeftModelForCausalLM\n"
        "from transformers import AutoModelForCausalLM\n"
        "model = AutoPeftModelForCausalLM.from_pretrained(sys.argv[1]).eval()\n"
        f"base = AutoModelForCausalLM.from_pretrained({HUB_ID!r}).eval()\n"
        "ids = torch.tensor([[1, 50, 60, 70]])\n"
        "with torch.no_grad():\n"
        "    print(float((model(ids).logits - base(ids).logits).abs().max()))\n"
    )
    loaded = subprocess.run([sys.executable, "-c", script, str(elsewhere / "run1-checkpoint")], cwd=tmp_path,
                            env=env(hub_cache), capture_output=True, text=True, timeout=300)
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    assert float(loaded.stdout.strip().splitlines()[-1]) > 1e-3  # the trained adapter is applied on the Hub base


def test_a_local_base_is_named_with_the_digests_of_its_files(tmp_path):
    from training.engine.checkpoints import adapter_base, base_reference, make_self_contained

    base = tmp_path / "models" / "my-base"
    base.mkdir(parents=True)
    (base / "model.safetensors").write_bytes(b"weights")
    checkpoint = tmp_path / "checkpoint-4"
    checkpoint.mkdir()
    (checkpoint / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(base)}))
    make_self_contained(checkpoint, str(base), str(base))
    assert json.loads((checkpoint / "adapter_config.json").read_text())["base_model_name_or_path"] == "my-base"
    manifest = json.loads((checkpoint / "base_model.json").read_text())
    assert manifest == {"name": "my-base", "hub_id": None,
                        "sha256": {"model.safetensors": hashlib.sha256(b"weights").hexdigest()}}
    # the server loads it on the directory it knows; without one the name alone cannot be found
    assert adapter_base(checkpoint, default=str(base)) == str(base)
    with pytest.raises(ValueError, match="local base model named 'my-base'"):
        adapter_base(checkpoint)
    assert base_reference("tiny") == {"name": "tiny", "hub_id": None}
    assert base_reference("Qwen/Qwen2.5-0.5B-Instruct") == {"name": "Qwen/Qwen2.5-0.5B-Instruct",
                                                           "hub_id": "Qwen/Qwen2.5-0.5B-Instruct"}


def test_the_download_adds_training_state_and_tensorboard_files_on_request(tmp_path):
    run = tmp_path / "run-7"
    checkpoint = run / "checkpoint-3"
    checkpoint.mkdir(parents=True)
    for name in ("adapter_model.safetensors", "adapter_config.json", "optimizer.pt", "rng_state.pth"):
        (checkpoint / name).write_bytes(b"x")
    (run / "tensorboard").mkdir()
    (run / "tensorboard" / "events.out.tfevents.1.host").write_bytes(b"e")

    def names(**kwargs):
        return sorted(download(checkpoint, **kwargs).getnames())

    assert names() == ["run1-checkpoint/adapter_config.json", "run1-checkpoint/adapter_model.safetensors"]
    assert "run1-checkpoint/optimizer.pt" in names(include_training_state=True)
    assert names(include_tensorboard=True) == [
        "run1-checkpoint/adapter_config.json", "run1-checkpoint/adapter_model.safetensors",
        "run1-checkpoint/tensorboard/events.out.tfevents.1.host"]
