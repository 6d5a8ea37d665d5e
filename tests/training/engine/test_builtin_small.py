"""The built-in `small` model speaks: readable English, valid text, ended turns; and every engine path takes it."""

import hashlib
import json
import os
import re
import string

import pytest
import torch

from tests.helpers import make_config, run_method, write_jsonl

PROMPTS = [
    "What does json.dumps do?",
    "What is the os.path module for?",
    "Explain the collections.OrderedDict class.",
    "How do I read a file line by line in Python?",
    "What is the difference between a list and a tuple?",
    "How do I remove duplicates from a Python list but keep the original order?",
    "Why is the sky blue?",
    "Give me 5 ideas for a team-building activity for a remote team of 12 people.",
    "Can you explain the difference between RAM and storage?",
    "Write a haiku about debugging code late at night.",
]
MAX_NEW_TOKENS = 160
ALLOWED = set(string.printable) - set("\t\r\x0b\x0c")  # printable ASCII and newline


@pytest.fixture(scope="module")
def small_dir():
    from training.engine.builtin import SMALL_DIR

    return str(SMALL_DIR)


@pytest.fixture(scope="module")
def small(small_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(small_dir).eval(), AutoTokenizer.from_pretrained(small_dir)


@pytest.fixture(scope="module")
def corpus_words():
    """Every word of the corpus the model was trained on (the standard library's documentation, the demo)."""
    from training.engine.builtin import corpus

    texts = [corpus.document_text(d) for d in corpus.collect_documents()]
    texts += [d["text"] for d in corpus.topic_documents()]
    texts += [m["content"] for c in corpus.demo_chats() for m in c["messages"]]
    return {w.lower() for text in texts for w in re.findall(r"[A-Za-z]+", text)}


def dir_digest(path):
    from pathlib import Path

    path = Path(path)
    h = hashlib.sha256()
    for f in sorted(Path(path).rglob("*")):
        h.update(str(f.relative_to(path)).encode())
        if f.is_file():
            h.update(f.read_bytes())
    return h.hexdigest()


def test_small_is_a_plain_hub_style_directory(small_dir, small):
    from transformers import AutoModelForSequenceClassification

    from training.engine.tiny import CHAT_TEMPLATE, SPECIAL_TOKENS, resolve_model_source

    model, tokenizer = small
    assert resolve_model_source("small") == small_dir
    assert os.path.getsize(f"{small_dir}/model.safetensors") <= 20 * 2**20
    assert model.dtype == torch.float32  # stored in fp16, loaded as fp32 for training
    assert 2e6 < sum(p.numel() for p in model.parameters()) < 10e6
    assert tokenizer.chat_template == CHAT_TEMPLATE
    assert all(tokenizer.convert_tokens_to_ids(t) != tokenizer.unk_token_id for t in SPECIAL_TOKENS)
    end_id = tokenizer.convert_tokens_to_ids("<|end|>")
    assert end_id in model.generation_config.eos_token_id
    reward = AutoModelForSequenceClassification.from_pretrained(small_dir, num_labels=1)
    ids = tokenizer("A reward for this text.", return_tensors="pt")
    assert reward(**ids).logits.shape == (1, 1)
    log = json.loads(open(f"{small_dir}/build_log.json").read())
    assert log["pretrain"]["train_loss"] and log["sft"]["train_loss"] and log["held_out_text_perplexity"]


def test_every_token_decodes_to_printable_ascii(small):
    """Whatever the model samples, the text is valid UTF-8 with no control characters but newline."""
    _, tokenizer = small
    special = set(tokenizer.all_special_ids)
    for token_id in range(len(tokenizer)):
        if token_id not in special:
            assert set(tokenizer.decode([token_id])) <= ALLOWED, token_id
    # and any input is normalised into the same alphabet
    text = tokenizer.decode(tokenizer("Caf\u00e9 \u201cquoted\u201d \u2014 \u65e5\u672c\tx\x07y")["input_ids"],
                            skip_special_tokens=True)
    assert set(text) <= ALLOWED and "Cafe" in text and '"quoted"' in text


def test_sampled_answers_are_readable_and_end_their_turn(small, corpus_words):
    model, tokenizer = small
    end_id = tokenizer.convert_tokens_to_ids("<|end|>")
    torch.manual_seed(0)
    known = total = 0
    for prompt in PROMPTS:
        ids = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                            return_tensors="pt", return_dict=True)["input_ids"]
        with torch.no_grad():
            out = model.generate(input_ids=ids, max_new_tokens=MAX_NEW_TOKENS, do_sample=True, temperature=0.7,
                                 top_p=0.9, top_k=0, pad_token_id=tokenizer.pad_token_id)
        new = out[0, ids.shape[1]:].tolist()
        assert end_id in new, f"{prompt!r}: no <|end|> within {MAX_NEW_TOKENS} tokens"
        answer_ids = new[: new.index(end_id)]
        answer = tokenizer.decode(answer_ids)  # an invalid byte sequence would decode to U+FFFD
        assert set(answer) <= ALLOWED, (prompt, answer)
        words = [w.lower() for w in re.findall(r"[A-Za-z]+", answer)]
        assert len(words) >= 2, (prompt, answer)
        known += sum(w in corpus_words for w in words)
        total += len(words)
    assert known / total >= 0.8, f"{known}/{total} words from the corpus"


def test_engine_generates_from_small(tmp_path, small_dir):
    rows = [{"prompt_id": f"p{i}", "prompt": [{"role": "user", "content": p}]} for i, p in enumerate(PROMPTS[:4])]
    prompts = write_jsonl(tmp_path / "prompts.jsonl", rows)
    cfg = make_config(tmp_path, str(tmp_path), method="generate", base_model="small", dataset=prompts,
                      generate={"n": 2, "max_new_tokens": 96, "temperature": 0.7})
    result, _ = run_method(cfg)
    rows = [json.loads(line) for line in open(result["path"], encoding="utf-8")]
    assert len(rows) == 8
    assert all(set(r["response"]) <= ALLOWED and re.search("[A-Za-z]{2}", r["response"]) for r in rows), rows


PLANTED = [
    ("What does json.dumps do?", "It returns a string of JSON text.", "It returns a list of numbers."),
    ("What is the os module for?", "It gives access to the operating system.", "It draws pictures."),
    ("Explain the csv module.", "It reads and writes comma separated files.", "It plays music."),
    ("What does math.sqrt do?", "It returns the square root of a number.", "It opens a window."),
]


@pytest.mark.parametrize("method", ["reward", "dpo"])
def test_one_lora_step_of_reward_and_dpo_on_small_leaves_it_untouched(tmp_path, small_dir, method):
    rows = [{"prompt": [{"role": "user", "content": p}], "chosen": [{"role": "assistant", "content": c}],
             "rejected": [{"role": "assistant", "content": r}]} for p, c, r in PLANTED * 4]
    dataset = write_jsonl(tmp_path / "pref.jsonl", rows)
    before = dir_digest(small_dir)
    cfg = make_config(tmp_path, str(tmp_path), method=method, base_model="small", dataset=dataset, max_steps=2,
                      batch_size=4)
    result, _ = run_method(cfg)
    assert result["step"] == 2 and result["base_model"] == small_dir
    assert (tmp_path / "out" / "checkpoint-2" / "adapter_model.safetensors").is_file()
    assert dir_digest(small_dir) == before  # runs write under their output_dir, never into the built-in model
