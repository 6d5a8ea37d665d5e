"""The planted task of bench/training/planted.py, smaller: a reward model trained with the default config on the
built-in `small` model tells the marked answer from the other on held-out pairs, through 10% flipped labels."""
import pytest

from tests.helpers import bench_module, run_method, write_jsonl

NTRAIN = 320  # 36 steps of the default schedule (one epoch, batch 8, 10% held out): ~15 s of CPU


@pytest.fixture(scope="module")
def planted():
    return bench_module("training/planted.py")


def test_the_task_is_the_same_for_a_seed_and_plants_the_marker(planted):
    train, heldout = planted.generate_task(seed=3, n_train=200, n_heldout=50)
    assert (train, heldout) == planted.generate_task(seed=3, n_train=200, n_heldout=50)
    assert len(train) == 200 and len(heldout) == 50
    flipped = [r for r in train if r.get("flipped")]
    assert len(flipped) == 20  # 10% of the labels
    for row in heldout + [r for r in train if not r.get("flipped")]:
        assert planted.has_marker(row["chosen"][0]["content"]) and not planted.has_marker(row["rejected"][0]["content"])
    for row in flipped:
        assert planted.has_marker(row["rejected"][0]["content"]) and not planted.has_marker(row["chosen"][0]["content"])
    # a held-out question is never trained on
    assert not {r["prompt"][0]["content"] for r in heldout} & {r["prompt"][0]["content"] for r in train}


@pytest.mark.slow
def test_a_default_reward_run_on_small_finds_the_planted_marker(planted, tmp_path):
    from training.engine.config import RunConfig

    train, heldout = planted.generate_task(seed=1, n_train=NTRAIN, n_heldout=100)
    cfg = RunConfig.from_dict({"method": "reward", "base_model": "small", "output_dir": str(tmp_path / "reward"),
                               "dataset": write_jsonl(tmp_path / "train.jsonl", train), "report_to": "none"})
    result, _ = run_method(cfg)
    evaluate = RunConfig.from_dict({"method": "evaluate", "base_model": "small", "output_dir": str(tmp_path / "eval"),
                                    "dataset": write_jsonl(tmp_path / "heldout.jsonl", heldout),
                                    "reward_checkpoint": result["checkpoint"]})
    figures, _ = run_method(evaluate)
    assert figures["n"] == 100
    assert figures["accuracy"] >= 0.95, figures

