"""The engine's generate with follow-ups (critique-and-revise): after the answer each follow-up question is asked
in turn, and every reply is kept."""
import json

import pytest

from tests.helpers import make_config, run_method, write_jsonl


def test_a_prompt_with_followups_becomes_a_conversation_of_replies(tmp_path, data_dir):
    prompts = write_jsonl(tmp_path / "p.jsonl", [
        {"prompt_id": 1, "prompt": [{"role": "user", "content": "Tell me about rain."}],
         "followups": ["Critique your answer.", "Now rewrite it."]},
        {"prompt_id": 2, "prompt": [{"role": "user", "content": "Tell me about snow."}]},
        {"prompt_id": 3, "prompt": [{"role": "user", "content": "Tell me about tea."}], "followups": ["Once more."]},
    ])
    cfg = make_config(tmp_path, data_dir, method="generate", dataset=prompts,
                      generate={"n": 1, "max_new_tokens": 12, "temperature": 0.7})
    result, _ = run_method(cfg)
    rows = {r["prompt_id"]: r for r in (json.loads(line) for line in open(result["path"]))}
    assert len(rows[1]["turns"]) == 3 and rows[1]["response"] == rows[1]["turns"][-1]
    assert len(rows[3]["turns"]) == 2
    assert "turns" not in rows[2] and isinstance(rows[2]["response"], str)


def test_followups_need_one_sample_per_prompt(tmp_path, data_dir):
    prompts = write_jsonl(tmp_path / "p.jsonl", [{"prompt_id": 1, "prompt": "Hi", "followups": ["Again."]}])
    cfg = make_config(tmp_path, data_dir, method="generate", dataset=prompts, generate={"n": 2, "max_new_tokens": 4})
    with pytest.raises(ValueError, match="generate.n"):
        run_method(cfg)
