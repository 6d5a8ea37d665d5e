"""The planted task: does each training method, with its default config, learn a preference we planted?

The task, generated from a seed: questions about the Python standard library (the built-in `small` model's
domain) with short docstring-like answers. In every pair the chosen answer carries one marker word ("only", after the
answer's subject) and the rejected one is the same answer without it; 10% of the training
labels are flipped. 300 held-out pairs, with their true labels, are written to a file of their own and never
trained on.

    OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 .venv/bin/python bench/training/planted.py \
        [--methods reward,dpo,ppo,rloo,grpo] [--train 800] [--heldout 300] [--seed 0]

Each method runs through the engine's CLI (`python -m training.engine CONFIG.json`) with a default config: only
method, base_model ("small"), dataset, output_dir and, for PPO, RLOO and GRPO, the reward checkpoint the reward run
wrote. The figures:

- reward: accuracy on the held-out pairs (the engine's `evaluate` method, kind reward_accuracy);
- dpo: implicit-reward accuracy on the held-out pairs (beta * (log pi - log ref) of the chosen answer above the
  rejected one's; before training both are 0, a tie, which counts half) and how often the base model itself finds
  the chosen answer more likely; how often sampled answers to the held-out questions carry the marker, from the
  base model and from the DPO checkpoint (the engine's `generate` method, its default sampling);
- ppo, rloo, grpo: the mean reward of the samples over the first and the last tenth of the run, the KL to the
  reference at the end (PPO: summed over a response; RLOO and GRPO: per token, as TRL logs it) and the marker
  rate of samples from the checkpoint.

Files go under var/bench-planted/ (--workdir), wiped at the start; results to bench/results/planted.json (or
--results NAME). `generate_task` is imported by the tests, which train a reward model on a smaller sample.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MARKER = "only"
METHODS = ("reward", "dpo", "ppo", "rloo", "grpo")
ONLINE = ("ppo", "rloo", "grpo")

# Questions and answers in the small model's domain: the standard library, in docstring English.
NAMES = {
    "function": ["os.path.join", "json.loads", "json.dumps", "re.match", "re.sub", "math.sqrt", "shutil.copy",
                 "time.sleep", "random.choice", "sorted", "open", "zip", "os.listdir", "glob.glob", "copy.deepcopy",
                 "textwrap.wrap", "hashlib.sha256", "base64.b64encode", "urllib.parse.quote", "itertools.chain"],
    "method": ["str.split", "str.strip", "str.join", "list.append", "list.sort", "dict.get", "dict.update",
               "set.add", "bytes.decode", "Path.read_text", "Thread.start", "Queue.put", "Logger.info",
               "socket.connect", "file.readline"],
    "class": ["collections.Counter", "collections.OrderedDict", "pathlib.Path", "threading.Lock", "datetime.date",
              "decimal.Decimal", "io.StringIO", "argparse.ArgumentParser", "subprocess.Popen", "queue.Queue"],
    "module": ["os", "sys", "re", "json", "csv", "shutil", "logging", "sqlite3", "tempfile", "functools"],
}
QUESTIONS = {
    "function": ["What does {name} do?", "How do I use {name}?", "What is {name} for?", "Explain what {name} does."],
    "method": ["What does {name} do?", "What is the {name} method for?", "How does {name} work?",
               "Explain the method {name}."],
    "class": ["What is {name}?", "Explain the {name} class.", "What is the class {name} used for?",
              "Tell me about the {name} class."],
    "module": ["What is the {name} module?", "What is the {name} module for?", "Tell me about the {name} module.",
               "Explain what the Python module {name} provides."],
}
SUBJECTS = {"function": ["{name}", "This function"], "method": ["{name}", "This method"],
            "class": ["{name}", "This class"], "module": ["The {name} module", "This module"]}
VERBS = {
    "function": ["returns", "creates", "builds", "computes", "reads", "converts"],
    "method": ["returns", "updates", "reads", "adds", "removes", "converts"],
    "class": ["represents", "holds", "stores", "wraps", "keeps", "describes"],
    "module": ["provides", "contains", "defines", "implements", "supports", "offers"],
}
OBJECTS = {
    "function": ["a new list of the items", "a copy of the string", "the number of bytes written", "the result of the call",
                 "an iterator over the lines", "a tuple of two integers", "the name of the file", "a sorted list of the values",
                 "the hash of the object", "a string with the whitespace removed"],
    "method": ["the value of the given key", "a copy of the object", "the first match of the pattern", "the items in place",
               "the size of the buffer", "a new string of the same length", "the element at the end", "the next line"],
    "class": ["a sequence of values", "the state of a lock", "a path on the file system", "a calendar date",
              "a number with fixed precision", "a table of counts", "a text buffer in memory", "a running process"],
    "module": ["functions for working with files", "an interface to the operating system", "tools for regular expressions",
               "classes for reading and writing data", "a way to log messages", "support for temporary files",
               "helpers for higher order functions", "access to the interpreter"],
}
TAILS = ["", " for the given path", " from the file", " in the current thread", " with the default encoding",
         " if it exists", " as a string", " when it is called", " of the given object", " on success"]
SECOND = ["Raises ValueError if the argument is not valid.", "The default is None.",
          "It is safe to call it more than once.", "See the documentation of the os module.",
          "If the file does not exist, an error is raised.", "The result is a new object.",
          "This is the same as calling it with no arguments.", "It works on any sequence."]


OPENINGS = ["{q}", "Quick question: {q}", "I am new to Python. {q}", "In Python 3, {lower}", "Briefly, {lower}"]


def questions() -> list[tuple[str, str, str]]:
    """Every (kind, name, question) the task asks: 1,100 of them."""
    out = []
    for kind in sorted(NAMES):
        for name in NAMES[kind]:
            for template in QUESTIONS[kind]:
                q = template.format(name=name)
                out.extend((kind, name, o.format(q=q, lower=q[0].lower() + q[1:])) for o in OPENINGS)
    return out


def _pair(rng: random.Random, kind: str, name: str, question: str, marker: str) -> dict:
    """One answer, with the marker after its subject (chosen) and without it (rejected)."""
    subject = rng.choice(SUBJECTS[kind]).format(name=name)
    rest = rng.choice(VERBS[kind]) + " " + rng.choice(OBJECTS[kind]) + rng.choice(TAILS) + "."
    if rng.random() < 0.5:
        rest += " " + rng.choice(SECOND)
    return {
        "prompt": [{"role": "user", "content": question}],
        "chosen": [{"role": "assistant", "content": f"{subject} {marker} {rest}"}],
        "rejected": [{"role": "assistant", "content": f"{subject} {rest}"}],
    }


def generate_task(seed: int = 0, n_train: int = 800, n_heldout: int = 300, flip: float = 0.1,
                  marker: str = MARKER) -> tuple[list[dict], list[dict]]:
    """(training pairs, held-out pairs): the chosen answer carries `marker`; `flip` of the training pairs (exactly
    round(flip * n_train), chosen at random) have chosen and rejected swapped and say so in `flipped`. Held-out
    pairs keep their true labels. The same seed gives the same rows."""
    rng = random.Random(seed)
    asked = questions()
    rng.shuffle(asked)
    # Held-out questions come first in the shuffled list and training questions after them, so no held-out
    # question is trained on (until a large sample has used every question once and starts over).
    heldout = [_pair(rng, *asked[i % len(asked)], marker) for i in range(n_heldout)]
    train = [_pair(rng, *asked[(n_heldout + i) % len(asked)], marker) for i in range(n_train)]
    for i in rng.sample(range(n_train), round(flip * n_train)):
        row = train[i]
        row["chosen"], row["rejected"] = row["rejected"], row["chosen"]
        row["flipped"] = True
    return train, heldout


def has_marker(text: str, marker: str = MARKER) -> bool:
    return re.search(rf"\b{re.escape(marker)}\b", text, re.IGNORECASE) is not None


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    return path


# ---------------------------------------------------------------- the engine


def run_engine(config: dict, workdir: Path, name: str) -> tuple[dict, float]:
    """Run `python -m training.engine` on `config`; return its result and wall seconds. stderr goes to NAME.log."""
    cfg_path = workdir / f"{name}.json"
    cfg_path.write_text(json.dumps(config, indent=2))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    started = time.perf_counter()
    with open(workdir / f"{name}.log", "w") as log:
        proc = subprocess.run([sys.executable, "-m", "training.engine", str(cfg_path)], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=log, text=True)
    wall = time.perf_counter() - started
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    done = [e for e in events if e.get("event") == "done"]
    if proc.returncode != 0 or not done:
        errors = [e.get("message") for e in events if e.get("event") == "error"]
        raise SystemExit(f"{name}: the engine failed ({proc.returncode}): {errors or 'see ' + str(workdir / name)}.log")
    return done[0]["result"], wall


OVERRIDES: dict[str, dict] = {}  # --override: settings tried on top of the defaults, by method


def config(method: str, dataset: Path, output_dir: Path, **extra) -> dict:
    """A default config: only what the run cannot do without (and what --override adds)."""
    cfg = {"method": method, "base_model": "small", "dataset": str(dataset), "output_dir": str(output_dir), **extra}
    for key, value in OVERRIDES.get(method, {}).items():
        cfg[key] = {**cfg.get(key, {}), **value} if isinstance(value, dict) else value
    return cfg


def marker_rate(generations: Path) -> dict:
    rows = [json.loads(line) for line in generations.read_text().splitlines() if line.strip()]
    hits = sum(has_marker(r["response"]) for r in rows)
    return {"samples": len(rows), "with_marker": hits, "rate": hits / max(len(rows), 1),
            "examples": [r["response"] for r in rows[:3]]}


def sample_marker_rate(workdir: Path, prompts: Path, checkpoint: str | None, name: str) -> dict:
    extra = {"generate": {"checkpoint": checkpoint}} if checkpoint else {}
    result, wall = run_engine(config("generate", prompts, workdir / name, **extra), workdir, name)
    return {**marker_rate(Path(result["path"])), "wall_s": round(wall, 1)}


# ---------------------------------------------------------------- DPO's implicit reward


def implicit_reward_accuracy(checkpoint: str, rows: list[dict], beta: float) -> dict:
    """On preference rows: how often beta * (log pi(chosen) - log ref(chosen)) exceeds the same for rejected (the
    DPO checkpoint's implicit reward; ref = the base, adapters off), with ties counting half; the same before
    training (policy = ref: every pair a tie); and how often the base, and the policy, find chosen more likely."""
    import torch

    from training.engine.checkpoints import adapter_base
    from training.engine.common import load_causal_lm_for_inference, load_tokenizer

    torch.set_num_threads(1)
    base = adapter_base(checkpoint)
    tokenizer = load_tokenizer(checkpoint)
    model = load_causal_lm_for_inference(checkpoint, base).eval()

    def logp(prompt, completion) -> tuple[float, float]:
        prompt_ids = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True,
                                                   return_dict=True)["input_ids"]
        ids = tokenizer.apply_chat_template(prompt + completion, tokenize=True, return_dict=True)["input_ids"]
        assert ids[: len(prompt_ids)] == prompt_ids
        tensor = torch.tensor([ids])
        targets = tensor[0, len(prompt_ids):]
        with torch.no_grad():
            policy = torch.log_softmax(model(tensor).logits[0, len(prompt_ids) - 1 : -1].float(), -1)
            with model.disable_adapter():
                ref = torch.log_softmax(model(tensor).logits[0, len(prompt_ids) - 1 : -1].float(), -1)
        pick = lambda lp: lp.gather(1, targets[:, None]).sum().item()  # noqa: E731
        return pick(policy), pick(ref)

    def score(outcomes: list[float]) -> float:
        return sum(outcomes) / len(outcomes)

    def outcome(a: float, b: float) -> float:
        return 1.0 if a > b else 0.5 if a == b else 0.0

    after, before, base_pref, policy_pref = [], [], [], []
    for row in rows:
        pc, rc = logp(row["prompt"], row["chosen"])
        pr, rr = logp(row["prompt"], row["rejected"])
        after.append(outcome(beta * (pc - rc), beta * (pr - rr)))
        before.append(outcome(beta * (rc - rc), beta * (rr - rr)))
        base_pref.append(outcome(rc, rr))
        policy_pref.append(outcome(pc, pr))
    return {"n": len(rows), "implicit_accuracy_before": score(before), "implicit_accuracy_after": score(after),
            "base_prefers_chosen": score(base_pref), "policy_prefers_chosen": score(policy_pref)}


# ---------------------------------------------------------------- curves and summaries


def curve(history: list[dict], key: str, points: int = 8) -> list[dict]:
    """`key` by step, averaged over `points` consecutive windows of the logged steps (samples are noisy)."""
    rows = [h for h in history if key in h]
    if not rows:
        return []
    size = max(1, len(rows) // points)
    out = []
    for start in range(0, len(rows) - size + 1, size):
        window = rows[start : start + size]
        out.append({"step": window[-1]["step"], key: round(sum(h[key] for h in window) / len(window), 4)})
    return out


def first_last(history: list[dict], key: str) -> dict:
    """Mean of `key` over the first and the last tenth of the logged steps."""
    values = [h[key] for h in history if key in h]
    if not values:
        return {}
    size = max(1, len(values) // 10)
    return {"first": round(sum(values[:size]) / size, 4), "last": round(sum(values[-size:]) / size, 4),
            "steps_averaged": size}


def run_reward(workdir: Path, train: Path, heldout: Path) -> dict:
    result, wall = run_engine(config("reward", train, workdir / "reward"), workdir, "reward")
    evaluation, eval_wall = run_engine(
        config("evaluate", heldout, workdir / "reward-eval", reward_checkpoint=result["checkpoint"]),
        workdir, "reward-eval")
    return {
        "heldout_accuracy": evaluation["accuracy"], "heldout_ci95": evaluation["ci95"],
        "heldout_mean_margin": evaluation["mean_margin"], "heldout_pairs": evaluation["n"],
        "steps": result["step"], "final_loss": result["final_loss"], "wall_s": round(wall, 1),
        "eval_wall_s": round(eval_wall, 1), "checkpoint": result["checkpoint"],
        "curve": {"loss": curve(result["history"], "loss"), "accuracy": curve(result["history"], "accuracy")},
    }


def run_dpo(workdir: Path, train: Path, heldout_rows: list[dict], prompts: Path, base_rate: dict) -> dict:
    from training.engine.config import DPOSection

    result, wall = run_engine(config("dpo", train, workdir / "dpo"), workdir, "dpo")
    implicit = implicit_reward_accuracy(result["checkpoint"], heldout_rows, DPOSection().beta)
    after = sample_marker_rate(workdir, prompts, result["checkpoint"], "dpo-samples")
    return {
        **implicit, "marker_rate_before": base_rate["rate"], "marker_rate_after": after["rate"],
        "samples": after["samples"], "examples_after": after["examples"], "steps": result["step"],
        "final_loss": result["final_loss"], "wall_s": round(wall, 1), "checkpoint": result["checkpoint"],
        "curve": {"rewards/accuracies": curve(result["history"], "rewards/accuracies"),
                  "rewards/margins": curve(result["history"], "rewards/margins")},
    }


def run_online(method: str, workdir: Path, train: Path, prompts: Path, reward_checkpoint: str) -> dict:
    result, wall = run_engine(config(method, train, workdir / method, reward_checkpoint=reward_checkpoint),
                              workdir, method)
    reward_key = "reward_mean" if method == "ppo" else "reward"
    after = sample_marker_rate(workdir, prompts, result["checkpoint"], f"{method}-samples")
    return {
        "reward": first_last(result["history"], reward_key), "kl": first_last(result["history"], "kl"),
        "kl_max": round(max((h["kl"] for h in result["history"] if "kl" in h), default=0.0), 4),
        "marker_rate_after": after["rate"], "examples_after": after["examples"], "steps": result["step"],
        "wall_s": round(wall, 1), "checkpoint": result["checkpoint"],
        "curve": {"reward": curve(result["history"], reward_key), "kl": curve(result["history"], "kl")},
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated, of " + ", ".join(METHODS))
    parser.add_argument("--train", type=int, default=800, help="training pairs")
    parser.add_argument("--heldout", type=int, default=300, help="held-out pairs")
    parser.add_argument("--flip", type=float, default=0.1, help="share of training labels flipped")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", default=str(ROOT / "var" / "bench-planted"))
    parser.add_argument("--results", default="planted", help="bench/results/NAME.json; '' writes nothing")
    parser.add_argument("--override", action="append", default=[], metavar="METHOD=JSON",
                        help='settings on top of a method\'s defaults, e.g. dpo=\'{"learning_rate": 1e-4}\' (to explore; '
                             "the figures are for the defaults)")
    args = parser.parse_args(argv)
    OVERRIDES.clear()
    for item in args.override:
        method, _, text = item.partition("=")
        OVERRIDES.setdefault(method, {}).update(json.loads(text))
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        parser.error(f"unknown method(s) {', '.join(unknown)}")
    if any(m in ONLINE for m in methods) and "reward" not in methods:
        methods.insert(0, "reward")  # PPO, RLOO and GRPO learn from the reward run's checkpoint

    workdir = Path(args.workdir).resolve()
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    train_rows, heldout_rows = generate_task(args.seed, args.train, args.heldout, args.flip)
    train = write_jsonl(workdir / "train.jsonl", train_rows)
    heldout = write_jsonl(workdir / "heldout.jsonl", heldout_rows)
    prompts = write_jsonl(workdir / "heldout_prompts.jsonl", [{"prompt": r["prompt"]} for r in heldout_rows])

    results: dict = {}
    started = time.perf_counter()
    base_rate = None
    if any(m != "reward" for m in methods):
        base_rate = sample_marker_rate(workdir, prompts, None, "base-samples")
        results["base_samples"] = base_rate
    for method in methods:
        print(f"[planted] {method} ...", file=sys.stderr, flush=True)
        if method == "reward":
            results["reward"] = run_reward(workdir, train, heldout)
        elif method == "dpo":
            results["dpo"] = run_dpo(workdir, train, heldout_rows, prompts, base_rate)
        else:
            results[method] = run_online(method, workdir, train, prompts, results["reward"]["checkpoint"])
        print(f"[planted] {method}: {json.dumps({k: v for k, v in results[method].items() if k != 'curve'})}",
              file=sys.stderr, flush=True)
    data = {
        "task": {"seed": args.seed, "train_pairs": args.train, "heldout_pairs": args.heldout, "flip": args.flip,
                 "marker": MARKER, "base_model": "small"},
        "overrides": dict(OVERRIDES), "threads": 1, "wall_s": round(time.perf_counter() - started, 1), "results": results,
    }
    if args.results:
        sys.path.insert(0, str(ROOT / "bench"))
        from common import write_result

        write_result(args.results, data)
    else:
        print(json.dumps(data, indent=2))
    return data


if __name__ == "__main__":
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    main()
