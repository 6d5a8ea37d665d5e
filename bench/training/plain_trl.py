"""The baseline: the same training written as a plain TRL script, with no Django, Celery or engine around it.

    python bench/training/plain_trl.py --method dpo --model DIR --data pairs.jsonl --steps 200 --out DIR

Prints one JSON line: {"final_loss", "first_loss", "train_s"}. Hyperparameters mirror what a run passes to the
engine (LoRA r=16/alpha=32/dropout=0.05 on q/k/v/o, linear schedule, AdamW, fp32 on CPU, one thread).
"""
from __future__ import annotations

import argparse
import json
import logging
import time

logging.getLogger("bitsandbytes").setLevel(logging.ERROR)

import torch  # noqa: E402
from datasets import Dataset  # noqa: E402
from peft import LoraConfig, TaskType  # noqa: E402
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer, set_seed  # noqa: E402
from trl import DPOConfig, DPOTrainer, RewardConfig, RewardTrainer  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--method", choices=["dpo", "reward"], required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--lr", type=float, required=True)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()

    torch.set_num_threads(1)
    set_seed(args.seed)
    rows = [json.loads(line) for line in open(args.data)]
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    common = dict(
        output_dir=args.out, max_steps=args.steps, per_device_train_batch_size=args.batch, learning_rate=args.lr,
        logging_steps=1, save_strategy="steps", save_steps=10**9, report_to="none", disable_tqdm=True,
        use_cpu=True, bf16=False, seed=args.seed, data_seed=args.seed, max_length=args.max_length,
        activation_checkpointing=False, dataloader_num_workers=0, optim="adamw_torch",
    )
    targets = ["q_proj", "k_proj", "v_proj", "o_proj"]
    if args.method == "dpo":
        for r in rows:
            r.pop("margin", None)
        model = AutoModelForCausalLM.from_pretrained(args.model)
        trainer = DPOTrainer(
            model=model, args=DPOConfig(**common, beta=0.1), train_dataset=Dataset.from_list(rows),
            processing_class=tokenizer,
            peft_config=LoraConfig(task_type=TaskType.CAUSAL_LM, r=16, lora_alpha=32, lora_dropout=0.05,
                                   target_modules=targets, bias="none"),
        )
    else:
        model = AutoModelForSequenceClassification.from_pretrained(args.model, num_labels=1)
        trainer = RewardTrainer(
            model=model, args=RewardConfig(**common), train_dataset=Dataset.from_list(rows),
            processing_class=tokenizer,
            peft_config=LoraConfig(task_type=TaskType.SEQ_CLS, r=16, lora_alpha=32, lora_dropout=0.05,
                                   target_modules=targets, bias="none"),
        )
    start = time.perf_counter()
    trainer.train()
    trainer.save_model(f"{args.out}/final")
    train_s = time.perf_counter() - start
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    print(json.dumps({"first_loss": losses[0], "final_loss": losses[-1], "train_s": round(train_s, 2)}))


if __name__ == "__main__":
    main()
