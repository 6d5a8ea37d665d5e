"""SFT: supervised fine-tuning on demonstrations (prompt/completion, whole conversations, or chosen responses)."""

from __future__ import annotations

from typing import Any

from .common import base_source, callbacks, load_model, load_tokenizer, peft_config, to_dataset, train_and_save, trl_args
from .config import RunConfig
from .data import read_jsonl, sft_rows, train_eval_split
from .events import Reporter


def train_sft(cfg: RunConfig, reporter: Reporter) -> dict[str, Any]:
    from trl import SFTConfig, SFTTrainer

    source = base_source(cfg)
    tokenizer = load_tokenizer(source)
    model = load_model(cfg, source)

    # prompt/completion rows: loss on the completion only (TRL default); messages rows: on the whole conversation,
    # or on assistant turns only with sft.assistant_only_loss.
    rows = sft_rows(read_jsonl(cfg.dataset))
    train_rows, eval_rows = train_eval_split(rows, cfg.eval_fraction, cfg.seed)

    args = trl_args(
        cfg,
        SFTConfig,
        max_length=cfg.max_length,
        packing=cfg.sft.packing,
        assistant_only_loss=cfg.sft.assistant_only_loss,
    )
    eval_dataset = to_dataset(eval_rows)
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=to_dataset(train_rows),
        eval_dataset=eval_dataset,
        processing_class=tokenizer,
        peft_config=peft_config(cfg, model),
        callbacks=callbacks(cfg, reporter),
    )
    result = train_and_save(trainer, cfg, reporter, eval_dataset=trainer.eval_dataset)
    result["train_rows"], result["eval_rows"] = len(train_rows), len(eval_rows)
    return result
