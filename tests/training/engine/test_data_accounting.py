"""What a run trains on is counted and reported: rows trained and held out, rows TRL drops as too long or cuts to
max_length, and ties, which never train a pairwise loss."""

import pytest

from tests.helpers import make_config, run_method, synthetic_pairs, write_jsonl

LONG = " ".join(["word"] * 200)  # far over max_length=64 tokens


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """40 pairs: 30 plain, 6 with a long chosen response, 4 ties (written as exports with ties=flag write them)."""
    rows = synthetic_pairs(n=40, seed=3)
    for row in rows[30:36]:
        row["chosen"] = [{"role": "assistant", "content": LONG}]
    for row in rows[36:]:
        row["tie"], row["margin"] = True, 0.0
    return write_jsonl(tmp_path_factory.mktemp("mixed") / "mixed.jsonl", rows)


def test_reward_counts_the_pairs_it_drops_as_too_long_and_leaves_ties_out(tmp_path, data_dir, mixed):
    cfg = make_config(tmp_path, data_dir, method="reward", dataset=mixed, max_steps=2, max_length=64)
    result, events = run_method(cfg)
    stats = result["data_stats"]
    assert stats["ties_excluded"] == 4 and stats["dropped_too_long"] == 6 and stats["truncated"] == 0
    assert stats["train_rows"] + stats["eval_rows"] == 30  # 40 - 4 ties - 6 dropped
    assert result["train_rows"] == stats["train_rows"]
    (event,) = events.of("data_stats")
    assert event["data_stats"] == stats
    assert [e["event"] for e in events.events].index("data_stats") < [e["event"] for e in events.events].index("started")


def test_dpo_counts_the_rows_it_truncates_and_leaves_ties_out(tmp_path, data_dir, mixed):
    cfg = make_config(tmp_path, data_dir, method="dpo", dataset=mixed, max_steps=2, max_length=64)
    result, _ = run_method(cfg)
    stats = result["data_stats"]
    assert stats == {"train_rows": stats["train_rows"], "eval_rows": stats["eval_rows"], "dropped_too_long": 0,
                     "truncated": 6, "ties_excluded": 4}
    assert stats["train_rows"] + stats["eval_rows"] == 36


def test_kto_from_pairs_leaves_ties_out(tmp_path, data_dir, mixed):
    cfg = make_config(tmp_path, data_dir, method="kto", dataset=mixed, max_steps=2, max_length=64)
    result, _ = run_method(cfg)
    stats = result["data_stats"]
    assert stats["ties_excluded"] == 4 and stats["truncated"] == 6
    assert stats["train_rows"] + stats["eval_rows"] == 72  # 36 pairs, each a desirable and an undesirable row


def test_sft_counts_truncated_rows(tmp_path, data_dir, mixed):
    cfg = make_config(tmp_path, data_dir, method="sft", dataset=mixed, max_steps=2, max_length=64)
    result, _ = run_method(cfg)
    assert result["data_stats"]["truncated"] == 6 and result["data_stats"]["ties_excluded"] == 0


def test_a_dataset_of_ties_only_is_refused(tmp_path, data_dir):
    rows = synthetic_pairs(n=4)
    for row in rows:
        row["tie"] = True
    cfg = make_config(tmp_path, data_dir, method="reward", dataset=write_jsonl(tmp_path / "ties.jsonl", rows))
    with pytest.raises(ValueError, match="^dataset: no preference rows"):
        run_method(cfg)


def test_preference_rows_never_turn_a_tie_into_a_preference():
    from training.engine.data import preference_rows, without_ties

    rows = [{"prompt": "p", "chosen": "a", "rejected": "b", "tie": True, "margin": 0.0},
            {"prompt": "p", "chosen": "c", "rejected": "d", "tie": False, "margin": 1.0}]
    kept, ties = without_ties(rows)
    assert ties == 1 and preference_rows(kept) == [{"prompt": "p", "chosen": "c", "rejected": "d", "margin": 1.0}]
