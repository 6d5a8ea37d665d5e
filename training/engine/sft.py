"""SFT: supervised fine-tuning on demonstrations (prompt/completion, whole conversations, or chosen responses)."""

from __future__ import annotations

from typing import Any

import torch

from .common import (
    base_source,
    callbacks,
    data_stats,
    load_model,
    load_tokenizer,
    peft_config,
    to_dataset,
    train_and_save,
    trl_args,
)
from .config import RunConfig
from .data import read_jsonl, sft_rows, sft_token_lengths, train_eval_split
from .events import Reporter


def train_sft(cfg: RunConfig, reporter: Reporter) -> dict[str, Any]:
    from trl import SFTConfig, SFTTrainer

    source = base_source(cfg)
    tokenizer = load_tokenizer(source)
    model = load_model(cfg, source)
    if cfg.sft.packing:
        check_packing_keeps_sequences_apart(model)

    # prompt/completion rows: loss on the completion only (TRL default); messages rows: on their last assistant
    # turn (sft.completion_only_loss), the whole conversation, or assistant turns only (sft.assistant_only_loss).
    rows = sft_rows(read_jsonl(cfg.dataset), completion_only=cfg.sft.completion_only_loss and not cfg.sft.assistant_only_loss)
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
    # SFTTrainer cuts rows to max_length (with packing too): counted from the rows as the template renders them.
    stats = data_stats(reporter, train_rows=len(train_rows), eval_rows=len(eval_rows),
                       truncated=sum(n > cfg.max_length for n in sft_token_lengths(tokenizer, rows)))
    result = train_and_save(trainer, cfg, reporter, eval_dataset=trainer.eval_dataset)
    result["train_rows"], result["eval_rows"], result["data_stats"] = len(train_rows), len(eval_rows), stats
    return result


@torch.no_grad()
def packing_leak(model) -> float:
    """How far packing moves a sequence's logits: the largest difference between a short sequence's logits alone
    and the same sequence packed after another one, through the forward TRL's packed batches take (no attention
    mask, position ids restarting at each sequence, no KV cache). 0 up to rounding when the attention path keeps
    packed sequences apart."""
    vocab = model.config.get_text_config().vocab_size
    first = [i % vocab for i in range(11, 19)]
    second = [i % vocab for i in range(31, 37)]
    device = next(model.parameters()).device
    packed_ids = torch.tensor([first + second], device=device)
    positions = torch.tensor([list(range(len(first))) + list(range(len(second)))], device=device)
    was_training = model.training
    model.eval()
    try:
        packed = model(input_ids=packed_ids, position_ids=positions, use_cache=False).logits[0, len(first):].float()
        alone = model(input_ids=torch.tensor([second], device=device), use_cache=False).logits[0].float()
    finally:
        model.train(was_training)
    return float((packed - alone).abs().max())


def check_packing_keeps_sequences_apart(model) -> None:
    """Refuse `sft.packing` when this model's attention path lets packed sequences attend to each other."""
    leak = packing_leak(model)
    logits_dtype = next(model.parameters()).dtype
    tolerance = 1e-3 if logits_dtype == torch.float32 else 5e-2
    if leak > tolerance:
        impl = model.config._attn_implementation
        raise ValueError(
            f"sft.packing: with attn_implementation {impl!r} this model's packed sequences attend to each other "
            f"(a sequence's logits move by {leak:.3g} when packed); use attn_implementation flash_attention_2, or "
            "set sft.packing to false"
        )
