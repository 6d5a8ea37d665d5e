"""The engine's streaming generate (an arena battle's answer from a model): the text is reported as it grows."""
import json

import pytest

from tests.helpers import make_config, run_method, write_jsonl


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_streamed_generation_reports_the_text_as_it_grows(tmp_path, data_dir, temperature, monkeypatch):
    from training.engine import generate

    monkeypatch.setattr(generate, "STREAM_INTERVAL_S", 0.0)  # report every token
    prompts = write_jsonl(tmp_path / "p.jsonl", [{"prompt_id": 7, "prompt": [{"role": "user", "content": "Tell me about rain."}]}])
    cfg = make_config(tmp_path, data_dir, method="generate", dataset=prompts,
                      generate={"n": 1, "stream": True, "max_new_tokens": 24, "temperature": temperature})
    result, reporter = run_method(cfg)

    texts = reporter.of("text")
    assert len(texts) >= 3 and all(e["prompt_id"] == 7 and e["sample"] == 0 for e in texts)
    assert [e["final"] for e in texts] == [False] * (len(texts) - 1) + [True]
    growing = [e["text"] for e in texts[:-1]]
    assert all(len(a) <= len(b) for a, b in zip(growing, growing[1:])) and len(set(growing)) >= 2
    (row,) = [json.loads(line) for line in open(result["path"])]
    assert row["response"] == texts[-1]["text"] and row["prompt_id"] == 7 and result["stream"] is True
