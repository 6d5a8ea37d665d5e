"""Fixtures for the engine tests: pure Python + torch, no Django database.

The built-in tiny model is built once per session into a temp dir; datasets are small synthetic JSONL files
in TRL's formats, where the "chosen" responses differ systematically from the "rejected" ones.
"""

import logging
import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
logging.getLogger("bitsandbytes").setLevel(logging.ERROR)

from tests.helpers import make_config, run_method, synthetic_pairs, write_jsonl  # noqa: E402


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
    """A data dir with the tiny model already built in it."""
    from training.engine.tiny import ensure_tiny_model, tiny_model_dir

    path = tmp_path_factory.mktemp("data")
    ensure_tiny_model(tiny_model_dir(path))
    return str(path)


@pytest.fixture(scope="session")
def tiny_path(data_dir):
    from training.engine.tiny import tiny_model_dir

    return str(tiny_model_dir(data_dir))


@pytest.fixture(scope="session")
def datasets(tmp_path_factory):
    d = tmp_path_factory.mktemp("datasets")
    pref = synthetic_pairs()
    return {
        "pref": write_jsonl(d / "pref.jsonl", pref),
        "pref_text": write_jsonl(d / "pref_text.jsonl", synthetic_pairs(conversational=False)),
        "kto": write_jsonl(d / "kto.jsonl", [
            {"prompt": r["prompt"], "completion": r["chosen"] if i % 2 else r["rejected"], "label": bool(i % 2)}
            for i, r in enumerate(pref)
        ]),
        "messages": write_jsonl(d / "messages.jsonl", [
            {"messages": r["prompt"] + r["chosen"]} for r in pref
        ]),
        "prompts": write_jsonl(d / "prompts.jsonl", [
            {"prompt_id": r["prompt_id"], "prompt": r["prompt"]} for r in pref[:6]
        ]),
    }


@pytest.fixture(scope="session")
def reward_checkpoint(tmp_path_factory, data_dir, datasets):
    """A LoRA reward model trained once for the tests that need a reward checkpoint."""
    tmp = tmp_path_factory.mktemp("reward")
    cfg = make_config(tmp, data_dir, method="reward", dataset=datasets["pref"], max_steps=30)
    result, _ = run_method(cfg)
    return result
