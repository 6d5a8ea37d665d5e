"""What every method shares: runtime setup, model/tokenizer loading, adapters, TRL arguments, the train-save step."""

from __future__ import annotations

import json
import logging
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer, BitsAndBytesConfig

from .config import RunConfig
from .callbacks import ReporterCallback
from .checkpoints import make_self_contained
from .tracking import mlflow_run, report_to, run_name
from .events import Reporter
from .tiny import END_OF_TURN, resolve_model_source

logger = logging.getLogger(__name__)

# LoRA targets per architecture (config.model_type); anything else gets peft's "all-linear".
TARGET_MODULES = {
    "llama": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "mistral": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "qwen2": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "qwen3": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "gemma": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "gemma2": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "phi3": ["qkv_proj", "o_proj"],
    "gpt2": ["c_attn", "c_proj"],
    "gpt_neox": ["query_key_value", "dense"],
    "bert": ["query", "key", "value"],
}
# Heads of sequence-classification models: trained in full next to the adapter and kept out of 4-bit quantization.
SEQ_CLS_HEADS = ["score", "classifier", "pooler"]


# ---------------------------------------------------------------- runtime


def setup_runtime(cfg: RunConfig) -> None:
    """Threads first (before any heavy op), then seeds."""
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    elif not torch.cuda.is_available():
        torch.set_num_threads(1)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    if cfg.method != "merge":  # a merge renames its finished output into place
        Path(cfg.output_dir).mkdir(parents=True, exist_ok=True)


def precision(cfg: RunConfig) -> str:
    """The compute dtype of this run on this machine: "bf16", "fp16" or "fp32" (auto: bf16 on a GPU that has it)."""
    if cfg.precision != "auto":
        return cfg.precision
    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return "bf16"
    return "fp32"


TORCH_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


@dataclass(frozen=True)
class DtypePolicy:
    """One dtype policy for every method and adapter.

    weights  what the optimizer updates: always fp32 masters, whatever the checkpoint's dtype (a bf16 Hub checkpoint
             loads as bf16 under transformers' dtype="auto"; updates below bf16's resolution would be lost)
    compute  the autocast dtype: bf16 where the device supports it, else fp32 (or as `precision` says)
    base     the frozen base weights under an adapter: the compute dtype, or "nf4" under QLoRA; a full fine-tune
             trains the base itself, so it is fp32
    """

    weights: str
    compute: str
    base: str

    def as_dict(self) -> dict[str, str]:
        return {"weights": self.weights, "compute": self.compute, "base": self.base}


def dtype_policy(cfg: RunConfig) -> DtypePolicy:
    compute = precision(cfg)
    base = {"full": "fp32", "qlora": "nf4"}.get(cfg.adapter, compute)
    return DtypePolicy(weights="fp32", compute=compute, base=base)


def device() -> torch.device:
    """This process's device: its rank's GPU under `accelerate launch` (LOCAL_RANK), else GPU 0, else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def attn_implementation(cfg: RunConfig) -> str | None:
    """The attention kernel to load models with; None leaves transformers' default (sdpa).

    auto: FlashAttention-2 on a CUDA device with the flash-attn package and a 16-bit compute dtype, else the default.
    """
    if cfg.attn_implementation != "auto":
        return cfg.attn_implementation
    if torch.cuda.is_available() and precision(cfg) in ("bf16", "fp16"):
        import importlib.util

        if importlib.util.find_spec("flash_attn") is not None:
            return "flash_attention_2"
    return None


def run_setup(cfg: RunConfig) -> dict[str, Any]:
    """How this run trains, as reported in its "setup" event and result."""
    return {
        "world_size": world_size(),
        "device": device().type,
        "dtype": dtype_policy(cfg).as_dict(),
        "attn_implementation": attn_implementation(cfg) or "sdpa",
    }


def base_source(cfg: RunConfig) -> str:
    return resolve_model_source(cfg.base_model, cfg.data_dir)


# ---------------------------------------------------------------- loading


def load_tokenizer(source: str):
    tokenizer = AutoTokenizer.from_pretrained(source)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def stop_token_ids(tokenizer) -> list[int]:
    """Token ids that end a response: eos, plus the end-of-turn token where the vocabulary has one."""
    ids = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    for token in (END_OF_TURN, "<|im_end|>", "<|eot_id|>", "<end_of_turn>"):
        token_id = tokenizer.convert_tokens_to_ids(token)
        if isinstance(token_id, int) and token_id != tokenizer.unk_token_id and token_id not in ids:
            ids.append(token_id)
    return ids


def quantization_config(cfg: RunConfig) -> BitsAndBytesConfig | None:
    if cfg.adapter != "qlora":
        return None
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=TORCH_DTYPES[precision(cfg)],  # the policy's compute dtype
        llm_int8_skip_modules=SEQ_CLS_HEADS + ["lm_head"],  # a new, random head must not be quantized
    )


def load_model(cfg: RunConfig, source: str, task: str = "causal"):
    """The model to train, by the dtype policy: a full fine-tune in fp32 (its weights are the masters), a frozen
    base under an adapter in the compute dtype, 4-bit NF4 under QLoRA; on this process's device (its rank's GPU)."""
    kwargs: dict[str, Any] = {}
    policy = dtype_policy(cfg)
    if cfg.adapter == "qlora":
        kwargs["quantization_config"] = quantization_config(cfg)
        kwargs["device_map"] = {"": str(device())}  # the rank's own GPU, never GPU 0 for every rank
        kwargs["dtype"] = TORCH_DTYPES[policy.compute]  # the layers bitsandbytes leaves unquantized
    else:
        kwargs["dtype"] = TORCH_DTYPES[policy.base]
    if attn_implementation(cfg):
        kwargs["attn_implementation"] = attn_implementation(cfg)
    if task == "seq_cls":
        model = AutoModelForSequenceClassification.from_pretrained(source, num_labels=1, **kwargs)
    else:
        model = AutoModelForCausalLM.from_pretrained(source, **kwargs)
    if cfg.adapter == "qlora":
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=cfg.gradient_checkpointing)
    return model


def target_modules(cfg: RunConfig, model) -> list[str] | str:
    if cfg.lora_target_modules:
        return cfg.lora_target_modules
    return TARGET_MODULES.get(model.config.model_type, "all-linear")


def peft_config(cfg: RunConfig, model, task: str = "causal"):
    """The peft config for cfg.adapter, or None for full fine-tuning."""
    from peft import LoraConfig, PromptTuningConfig, PromptTuningInit, TaskType

    task_type = TaskType.SEQ_CLS if task == "seq_cls" else TaskType.CAUSAL_LM
    if cfg.adapter in ("lora", "qlora"):
        return LoraConfig(
            task_type=task_type,
            r=cfg.lora_r,
            lora_alpha=cfg.lora_alpha,
            lora_dropout=cfg.lora_dropout,
            target_modules=target_modules(cfg, model),
            bias="none",
        )
    if cfg.adapter == "prompt_tuning":
        return PromptTuningConfig(
            task_type=task_type, num_virtual_tokens=cfg.num_virtual_tokens, prompt_tuning_init=PromptTuningInit.RANDOM
        )
    return None


def trainable_in_fp32(model) -> None:
    """Make every trainable parameter an fp32 master, after the trainer has wrapped the model.

    TRL casts the trainable parameters of a quantized model (LoRA and the `score` head copy that peft keeps in
    `modules_to_save`) to bf16, and a head copied from a bf16 base is bf16: both go back to fp32 here, and autocast
    does the casting in the forward pass. Without autocast (fp32 compute) a head can still receive lower-precision
    hidden states (the 4-bit layers' output), so its input is cast to its own dtype.
    """
    from peft.utils import ModulesToSaveWrapper

    for param in model.parameters():
        if param.requires_grad and param.is_floating_point() and param.dtype != torch.float32:
            param.data = param.data.float()

    def cast_input(module, args):
        weight = getattr(module, "weight", None)
        if weight is None or torch.is_autocast_enabled():
            return None
        return tuple(a.to(weight.dtype) if torch.is_tensor(a) and a.is_floating_point() else a for a in args)

    for wrapper in model.modules():
        if isinstance(wrapper, ModulesToSaveWrapper):
            for head in wrapper.modules_to_save.values():
                head.register_forward_pre_hook(cast_input)


def is_adapter_dir(path: str | os.PathLike) -> bool:
    return (Path(path) / "adapter_config.json").is_file()


def load_causal_lm_for_inference(checkpoint: str | None, base: str, dtype=None):
    """A causal LM for generation: the base, a full-model checkpoint, or the base with an adapter checkpoint."""
    kwargs = {"dtype": dtype} if dtype is not None else {}
    if checkpoint is None:
        return AutoModelForCausalLM.from_pretrained(base, **kwargs)
    if is_adapter_dir(checkpoint):
        from peft import PeftModel

        model = AutoModelForCausalLM.from_pretrained(base, **kwargs)
        return PeftModel.from_pretrained(model, checkpoint)
    return AutoModelForCausalLM.from_pretrained(checkpoint, **kwargs)


# ---------------------------------------------------------------- TRL arguments and the train-save step


def trl_args(cfg: RunConfig, config_cls, eval_rows: int = 0, **method_args):
    """A TRL *Config for this run: shared settings from RunConfig, method settings from `method_args`."""
    prec = precision(cfg)
    return config_cls(
        output_dir=cfg.output_dir,
        max_steps=cfg.max_steps,
        num_train_epochs=cfg.num_epochs,
        per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum,
        learning_rate=cfg.lr,
        lr_scheduler_type=cfg.lr_scheduler,
        warmup_steps=cfg.warmup_ratio,  # a float in [0, 1) is a ratio of the total steps
        weight_decay=cfg.weight_decay,
        max_grad_norm=cfg.max_grad_norm,
        optim=cfg.optim,
        seed=cfg.seed,
        data_seed=cfg.seed,
        logging_steps=cfg.logging_steps,
        # The trainer always writes the last step as a full (resumable) checkpoint; save_steps adds earlier ones.
        save_strategy="steps",
        save_steps=cfg.save_steps or 10**9,
        eval_strategy="no",
        report_to=report_to(cfg) or "none",  # TensorBoard by default, MLflow / W&B when configured (tracking.py)
        run_name=run_name(cfg),
        disable_tqdm=True,
        use_cpu=not torch.cuda.is_available(),
        bf16=prec == "bf16",
        fp16=prec == "fp16",
        activation_checkpointing=cfg.gradient_checkpointing,
        dataloader_num_workers=0,
        **method_args,
    )


def train_and_save(trainer, cfg: RunConfig, reporter: Reporter, eval_dataset=None) -> dict[str, Any]:
    """Train (resuming if asked), evaluate on the held-out rows, report the final checkpoint; return the result."""
    from transformers import PrinterCallback

    trainable_in_fp32(trainer.model)  # before train() builds the optimizer over them
    trainer.remove_callback(PrinterCallback)  # it prints python dicts to stdout; our events carry the same numbers
    with mlflow_run(cfg, main_process=trainer.is_world_process_zero()):
        trainer.train(resume_from_checkpoint=cfg.resume_from_checkpoint)
        in_sync = replicas_in_sync(trainer.model)
        eval_metrics: dict[str, float] = {}
        if eval_dataset is not None and len(eval_dataset) > 0:
            eval_metrics = _quality_metrics(trainer.evaluate())
    callback = next(c for c in trainer.callback_handler.callbacks if isinstance(c, ReporterCallback))
    step = trainer.state.global_step
    checkpoint_dir = Path(cfg.output_dir) / f"checkpoint-{step}"
    if not checkpoint_dir.is_dir():  # e.g. a resumed run that had nothing left to do
        trainer.save_model(str(checkpoint_dir))
    metrics = {**_quality_metrics(callback.last_metrics), **eval_metrics}
    if trainer.is_world_process_zero():
        make_self_contained(checkpoint_dir, cfg.base_model, base_source(cfg))
        reporter.checkpoint(step, checkpoint_dir, cfg.checkpoint_kind, metrics)
    train_losses = [h["loss"] for h in callback.history if "loss" in h]
    return {
        "method": cfg.method,
        "step": step,
        "checkpoint": str(checkpoint_dir.resolve()),
        "kind": cfg.checkpoint_kind,
        "base_model": base_source(cfg),
        "metrics": metrics,
        "eval": eval_metrics,
        "first_loss": train_losses[0] if train_losses else None,
        "final_loss": train_losses[-1] if train_losses else None,
        "history": [h for h in callback.history if "loss" in h],  # per logged step
        "replicas_in_sync": in_sync,
        "report_to": report_to(cfg),
        **run_setup(cfg),
    }


def replicas_in_sync(model) -> bool | None:
    """Under several processes, whether every rank holds the same trainable weights (a digest of them per rank,
    all-gathered); None on one process. Every rank must call it."""
    import hashlib

    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return None
    digest = hashlib.sha256()
    for name, param in sorted(model.named_parameters(), key=lambda item: item[0]):
        if param.requires_grad:
            tensor = param.full_tensor() if hasattr(param, "full_tensor") else param  # FSDP shards: gathered
            digest.update(name.encode())
            digest.update(tensor.detach().float().cpu().numpy().tobytes())
    digests = [None] * dist.get_world_size()
    dist.all_gather_object(digests, digest.hexdigest())
    return len(set(digests)) == 1


def data_stats(reporter: Reporter, *, train_rows: int, eval_rows: int, dropped_too_long: int = 0, truncated: int = 0,
               ties_excluded: int = 0) -> dict[str, int]:
    """What the run trains on, reported as soon as the trainer has prepared its data: rows trained and held out
    (after TRL's own filtering), rows dropped as longer than max_length, rows cut to max_length, ties left out."""
    stats = {"train_rows": train_rows, "eval_rows": eval_rows, "dropped_too_long": dropped_too_long,
             "truncated": truncated, "ties_excluded": ties_excluded}
    reporter.data_stats(stats)
    return stats


def _quality_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """Numeric metrics without the bookkeeping ones (runtimes, throughput, flos, epoch)."""
    skip = ("_runtime", "_per_second", "total_flos", "epoch")
    return {
        k: float(v)
        for k, v in metrics.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool) and not k.endswith(skip)
    }


def callbacks(cfg: RunConfig, reporter: Reporter) -> list:
    source = base_source(cfg)
    return [ReporterCallback(reporter, cfg.method, cfg.checkpoint_kind,
                             on_save=lambda path: make_self_contained(path, cfg.base_model, source))]


def to_dataset(rows: list[dict]):
    from datasets import Dataset

    return Dataset.from_list(rows) if rows else None
