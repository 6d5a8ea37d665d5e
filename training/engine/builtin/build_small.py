"""Build the built-in `small` model: corpus, tokenizer, pre-training, instruction tuning, saved as a Hub-style dir.

    python -m training.engine.builtin.build_small [--out training/engine/builtin/small] [--work var/build-small]

Offline and deterministic (fixed seeds, fixed stop steps, one thread by default): the corpus comes from the
standard library of the running Python (`corpus.py`) and the demo prompts, so the same Python version, torch
version and thread count give the same weights. One thread, not two: on a 2-core machine shared with other jobs,
two OpenMP threads trained 4x slower than one (1,200 against 4,750 tokens/s measured beside one busy process). The losses of every phase, the held-out perplexities and a few sampled answers are written
to `build_log.json` beside the weights.

The model is a Llama with the same special tokens and chat template as the built-in `tiny` model (every turn is
"<|role|>\\n{content}<|end|>\\n"), so every engine path treats it the same way. The tokenizer is a byte-level BPE
whose alphabet is only printable ASCII and newline, behind a normaliser that maps any input into that set: every
token decodes to printable ASCII, so generated text is always valid UTF-8 without control characters.

The weights are stored in fp16 (half the size) while config.json says `float32`: a plain `from_pretrained` loads
them as fp32, which is what CPU training and the tests use.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import subprocess
import sys
import time
from pathlib import Path

from ..tiny import END_OF_TURN, SPECIAL_TOKENS, chat_tokenizer
from . import SMALL_DIR
from .corpus import ASCII_TABLE

ROOT = Path(__file__).resolve().parents[3]

VOCAB_SIZE = 4096
HIDDEN_SIZE = 256
INTERMEDIATE_SIZE = 688
NUM_LAYERS = 6
NUM_HEADS = 4
NUM_KV_HEADS = 4
MAX_POSITIONS = 512
BLOCK = 256  # pre-training sequence length
SEED = 16


def byte_level_char(b: int) -> str:
    """The character GPT-2's byte-level mapping uses for byte `b` (printable ASCII maps to itself)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    if b in printable:
        return chr(b)
    extra = [x for x in range(256) if x not in printable]
    return chr(256 + extra.index(b))


ALPHABET = [byte_level_char(b) for b in [10] + list(range(0x20, 0x7F))]  # newline + printable ASCII


def build_tokenizer(texts):
    """A byte-level BPE over printable ASCII + newline, trained on `texts` (an iterable of strings)."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    # Same mapping as corpus.to_ascii: any input (a user's prompt in any script) becomes printable ASCII + newline.
    tok.normalizer = normalizers.Sequence(
        [normalizers.Replace(src, dst) for src, dst in ASCII_TABLE.items()]
        + [normalizers.NFKD(), normalizers.Replace(Regex(r"[^\n\x20-\x7e]"), "")]
    )
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE, special_tokens=SPECIAL_TOKENS, initial_alphabet=ALPHABET, limit_alphabet=len(ALPHABET),
        min_frequency=2, show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return chat_tokenizer(tok, MAX_POSITIONS)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def chat_text(chat: dict) -> str:
    return "\n".join(m["content"] for m in chat["messages"])


# ---------------------------------------------------------------- data


def pretraining_blocks(tokenizer, documents: list[dict], rng: random.Random):
    """All documents (each "<|bos|> text <|eos|>") in a shuffled order, cut into BLOCK-token rows."""
    order = list(range(len(documents)))
    rng.shuffle(order)
    stream: list[int] = []
    for i in order:
        stream.extend(documents[i]["ids"])
    n = len(stream) // BLOCK
    return [stream[k * BLOCK : (k + 1) * BLOCK] for k in range(n)]


def encode_chat(tokenizer, chat: dict) -> tuple[list[int], list[int]] | None:
    """(input ids, labels with -100 outside the assistant turn), or None when it does not fit MAX_POSITIONS."""
    out = tokenizer.apply_chat_template(
        chat["messages"], tokenize=True, return_dict=True, return_assistant_tokens_mask=True
    )
    ids, mask = out["input_ids"], out["assistant_masks"]
    if len(ids) > MAX_POSITIONS or not any(mask):
        return None
    return ids, [t if m else -100 for t, m in zip(ids, mask)]


def batches_of(rows: list, size: int, rng: random.Random | None):
    order = list(range(len(rows)))
    if rng is not None:
        rng.shuffle(order)
    for k in range(0, len(order), size):
        yield [rows[i] for i in order[k : k + size]]


def collate(rows: list[tuple[list[int], list[int]]], pad_id: int):
    import torch

    width = max(len(ids) for ids, _ in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), -100, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for r, (x, y) in enumerate(rows):
        ids[r, : len(x)] = torch.tensor(x)
        labels[r, : len(y)] = torch.tensor(y)
        mask[r, : len(x)] = 1
    return ids, labels, mask


# ---------------------------------------------------------------- training


def lr_at(step: int, total: int, peak: float, warmup: int, floor: float = 0.1) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return peak * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


def mean_loss(model, batches, amp: bool) -> float:
    """Token-weighted mean loss over `batches` of (ids, labels, mask)."""
    import torch

    model.eval()
    total, count = 0.0, 0
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
        for ids, labels, mask in batches:
            logits = model(input_ids=ids, attention_mask=mask).logits.float()
            shift_logits, shift_labels = logits[:, :-1], labels[:, 1:]
            loss = torch.nn.functional.cross_entropy(
                shift_logits.reshape(-1, shift_logits.shape[-1]), shift_labels.reshape(-1), ignore_index=-100,
                reduction="sum",
            )
            total += float(loss)
            count += int((shift_labels != -100).sum())
    model.train()
    return total / max(1, count)


def train_phase(model, name: str, make_epoch, eval_batches, *, epochs: float, lr: float, warmup: int,
                eval_every: int, patience: int, amp: bool, log: dict, stop_step: int | None = None,
                deadline: float | None = None):
    """AdamW with a cosine schedule over `epochs`; evaluates every `eval_every` steps and keeps the best held-out
    weights. Stops early at `stop_step` (the schedule is unchanged) or, when given, at the wall-clock `deadline`."""
    import copy

    import torch

    steps_per_epoch = sum(1 for _ in make_epoch(0))
    total = max(1, int(steps_per_epoch * epochs))
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
        lr=lr, betas=(0.9, 0.95), eps=1e-8,
    )
    phase = {"steps_per_epoch": steps_per_epoch, "planned_steps": total, "lr": lr, "warmup": warmup,
             "train_loss": [], "held_out": [], "stopped": "planned steps"}
    log[name] = phase
    best, best_state, since_best = float("inf"), None, 0
    step, epoch, running, running_n, tokens = 0, 0, 0.0, 0, 0
    started = time.time()

    def evaluate():
        nonlocal best, best_state, since_best
        held = mean_loss(model, eval_batches, amp)
        phase["held_out"].append({"step": step, "loss": round(held, 4), "perplexity": round(math.exp(held), 2)})
        print(f"[{name}] step {step}/{total} held-out loss {held:.4f} ppl {math.exp(held):.2f} "
              f"({time.time() - started:.0f}s)", flush=True)
        if held < best - 1e-4:
            best, best_state, since_best = held, copy.deepcopy(model.state_dict()), 0
        else:
            since_best += 1

    model.train()
    while step < total:
        for ids, labels, mask in make_epoch(epoch):
            for group in opt.param_groups:
                group["lr"] = lr_at(step, total, lr, warmup)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
                loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
            step += 1
            tokens += int(mask.sum())
            running += loss.item()
            running_n += 1
            if step % 25 == 0 or step == total:
                phase["train_loss"].append({"step": step, "loss": round(running / running_n, 4)})
                print(f"[{name}] step {step}/{total} loss {running / running_n:.4f} "
                      f"{tokens / (time.time() - started):.0f} tok/s", flush=True)
                running, running_n = 0.0, 0
            if step % eval_every == 0 or step == total:
                evaluate()
                if since_best >= patience:
                    phase["stopped"] = f"held-out loss did not improve for {patience} evaluations"
                    break
            if stop_step is not None and step >= stop_step:
                phase["stopped"] = f"stop step {stop_step}"
                break
            if deadline is not None and time.time() > deadline:
                phase["stopped"] = "time budget"
                break
            if step >= total:
                break
        else:
            epoch += 1
            continue
        break
    if not phase["held_out"] or phase["held_out"][-1]["step"] != step:
        evaluate()
    model.load_state_dict(best_state)
    phase.update(steps=step, tokens=tokens, seconds=round(time.time() - started, 1),
                 best_held_out_loss=round(best, 4), best_held_out_perplexity=round(math.exp(best), 2))
    return phase


# ---------------------------------------------------------------- sampling (recorded in the log)

SAMPLE_PROMPTS = [
    "What does json.dumps do?",
    "What is the collections module for?",
    "How do I read a file line by line in Python?",
    "Explain what a list comprehension is.",
    "What is the difference between a tuple and a list?",
    "Why is the sky blue?",
    "Give me 5 ideas for a team-building activity for a remote team of 12 people.",
]


def sample_answers(model, tokenizer, prompts, max_new_tokens=128, seed=SEED):
    import torch

    end_id = tokenizer.convert_tokens_to_ids(END_OF_TURN)
    model.eval()
    torch.manual_seed(seed)
    out = []
    for prompt in prompts:
        ids = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                            return_tensors="pt", return_dict=True)["input_ids"]
        with torch.no_grad():
            gen = model.generate(input_ids=ids, max_new_tokens=max_new_tokens, do_sample=True, temperature=0.7,
                                 top_p=0.9, top_k=0, eos_token_id=[end_id, tokenizer.eos_token_id],
                                 pad_token_id=tokenizer.pad_token_id)
        new = gen[0, ids.shape[1]:].tolist()
        out.append({"prompt": prompt, "answer": tokenizer.decode(new, skip_special_tokens=True),
                    "ended": end_id in new})
    model.train()
    return out


# ---------------------------------------------------------------- main


def build(out: Path, work: Path, *, threads: int, pretrain_epochs: float, sft_epochs: float, amp: bool,
          pretrain_lr: float, sft_lr: float, pretrain_stop: int | None, sft_stop: int | None,
          budget_minutes: float | None) -> dict:
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    started = time.time()
    torch.set_num_threads(threads)
    torch.manual_seed(SEED)
    log: dict = {"seed": SEED, "threads": threads, "bf16_autocast": amp, "torch": torch.__version__,
                 "python": sys.version.split()[0]}

    # 1. corpus, in a child process: importing the standard library must not leave anything behind in this one
    corpus_dir = work / "corpus"
    subprocess.run([sys.executable, "-m", "training.engine.builtin.corpus", str(corpus_dir)], cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL)
    log["corpus"] = json.loads((corpus_dir / "corpus_stats.json").read_text())
    documents = read_jsonl(corpus_dir / "documents.jsonl")
    chats = read_jsonl(corpus_dir / "chats.jsonl")

    # 2. tokenizer, on the training text only
    t0 = time.time()
    tokenizer = build_tokenizer(
        [d["text"] for d in documents if not d["held_out"]] + [chat_text(c) for c in chats if not c["held_out"]]
    )
    eos = tokenizer.eos_token_id
    for doc in documents:
        doc["ids"] = tokenizer(doc["text"])["input_ids"] + [eos]  # the tokenizer adds <|bos|>
    train_docs = [d for d in documents if not d["held_out"]]
    held_docs = [d for d in documents if d["held_out"]]
    log["tokenizer"] = {"vocab_size": len(tokenizer), "seconds": round(time.time() - t0, 1),
                        "train_tokens": sum(len(d["ids"]) for d in train_docs),
                        "held_out_tokens": sum(len(d["ids"]) for d in held_docs),
                        "chars_per_token": round(sum(len(d["text"]) for d in documents)
                                                 / sum(len(d["ids"]) for d in documents), 2)}
    print(json.dumps(log["tokenizer"]), flush=True)

    # 3. model
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=HIDDEN_SIZE, intermediate_size=INTERMEDIATE_SIZE,
        num_hidden_layers=NUM_LAYERS, num_attention_heads=NUM_HEADS, num_key_value_heads=NUM_KV_HEADS,
        max_position_embeddings=MAX_POSITIONS, pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, tie_word_embeddings=True,
        initializer_range=0.02, rope_theta=10000.0,
    )
    torch.manual_seed(SEED)
    model = LlamaForCausalLM(config)
    log["parameters"] = sum(p.numel() for p in model.parameters())
    print(f"parameters: {log['parameters']}", flush=True)

    deadline = started + budget_minutes * 60 if budget_minutes else None
    # 4. pre-training on the documents
    batch = 16
    rng = random.Random(SEED)
    held_blocks = pretraining_blocks(tokenizer, held_docs, random.Random(0))
    held_batches = [collate([(b, b) for b in chunk], tokenizer.pad_token_id)
                    for chunk in batches_of(held_blocks, batch, None)]

    def pretrain_epoch(epoch: int):
        blocks = pretraining_blocks(tokenizer, train_docs, random.Random(SEED + epoch))
        for chunk in batches_of(blocks, batch, random.Random(SEED + 1000 + epoch)):
            if len(chunk) == batch:
                yield collate([(b, b) for b in chunk], tokenizer.pad_token_id)

    steps_per_epoch = sum(1 for _ in pretrain_epoch(0))
    train_phase(model, "pretrain", pretrain_epoch, held_batches, epochs=pretrain_epochs, lr=pretrain_lr,
                warmup=100, eval_every=max(50, steps_per_epoch // 2), patience=3, amp=amp, log=log,
                stop_step=pretrain_stop, deadline=deadline and deadline - 12 * 60)  # leave time for instruction tuning
    log["pretrain"]["held_out_text_perplexity"] = log["pretrain"]["best_held_out_perplexity"]
    log["samples_after_pretraining"] = sample_answers(model, tokenizer, SAMPLE_PROMPTS[:3], max_new_tokens=48)
    del rng

    # 5. instruction tuning on the chats (loss on the assistant turn and its <|end|> only)
    weights = {"docstring": 1, "topic": 3, "demo": 3, "self": 10}
    train_chats, held_chats = [], []
    skipped = 0
    for chat in chats:
        encoded = encode_chat(tokenizer, chat)
        if encoded is None:
            skipped += 1
            continue
        if chat["held_out"]:
            held_chats.append(encoded)
        else:
            train_chats.extend([encoded] * weights[chat["source"]])
    log["sft_data"] = {"train_rows": len(train_chats), "held_out_rows": len(held_chats), "too_long": skipped}
    held_chat_batches = [collate(chunk, tokenizer.pad_token_id) for chunk in batches_of(held_chats, batch, None)]

    def sft_epoch(epoch: int):
        # Similar lengths together (less padding), batches in random order.
        order = sorted(range(len(train_chats)), key=lambda i: (len(train_chats[i][0]), i))
        chunks = [order[k : k + batch] for k in range(0, len(order), batch)]
        random.Random(SEED + 2000 + epoch).shuffle(chunks)
        for chunk in chunks:
            yield collate([train_chats[i] for i in chunk], tokenizer.pad_token_id)

    text_loss_before = mean_loss(model, held_batches, amp)
    train_phase(model, "sft", sft_epoch, held_chat_batches, epochs=sft_epochs, lr=sft_lr, warmup=50,
                eval_every=max(50, sum(1 for _ in sft_epoch(0)) // 2), patience=3, amp=amp, log=log,
                stop_step=sft_stop, deadline=deadline)
    log["sft"]["held_out_answer_perplexity"] = log["sft"]["best_held_out_perplexity"]
    text_loss_after = mean_loss(model, held_batches, amp)
    log["held_out_text_perplexity"] = {"after_pretraining": round(math.exp(text_loss_before), 2),
                                       "after_instruction_tuning": round(math.exp(text_loss_after), 2)}

    # 6. save: fp16 weights, config saying float32 (see the module docstring), end-of-turn as eos for generate()
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=[tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids(END_OF_TURN)],
        pad_token_id=tokenizer.pad_token_id,
    )
    log["samples"] = sample_answers(model, tokenizer, SAMPLE_PROMPTS)
    out.mkdir(parents=True, exist_ok=True)
    model.to(torch.float16).save_pretrained(out)
    tokenizer.save_pretrained(out)
    config_path = out / "config.json"
    saved = json.loads(config_path.read_text())
    saved["dtype"] = "float32"
    config_path.write_text(json.dumps(saved, indent=2, sort_keys=True) + "\n")
    log["size_bytes"] = (out / "model.safetensors").stat().st_size
    log["wall_seconds"] = round(time.time() - started, 1)
    (out / "build_log.json").write_text(json.dumps(log, indent=1) + "\n")
    return log


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(SMALL_DIR))
    parser.add_argument("--work", default=str(ROOT / "var" / "build-small"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--pretrain-epochs", type=float, default=10)
    parser.add_argument("--sft-epochs", type=float, default=3)
    parser.add_argument("--pretrain-lr", type=float, default=2e-3)
    parser.add_argument("--sft-lr", type=float, default=5e-4)
    # The committed weights come from a run with a 70-minute budget on a loaded machine, which ended the phases at
    # these steps; stopping at the same steps (same schedules) reproduces them whatever the machine's speed.
    parser.add_argument("--pretrain-stop-step", type=int, default=1540, help="0: run the planned epochs")
    parser.add_argument("--sft-stop-step", type=int, default=577, help="0: run the planned epochs")
    parser.add_argument("--fp32", action="store_true", help="no bf16 autocast (about 2x slower on CPU)")
    parser.add_argument("--budget-minutes", type=float, default=None,
                        help="stop pre-training 12 minutes before this budget and instruction tuning at it")
    args = parser.parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    log = build(Path(args.out), Path(args.work), threads=args.threads, pretrain_epochs=args.pretrain_epochs,
                sft_epochs=args.sft_epochs, amp=not args.fp32, pretrain_lr=args.pretrain_lr, sft_lr=args.sft_lr,
                pretrain_stop=args.pretrain_stop_step or None, sft_stop=args.sft_stop_step or None,
                budget_minutes=args.budget_minutes)
    print(json.dumps({k: log[k] for k in ("parameters", "size_bytes", "wall_seconds", "held_out_text_perplexity")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
