"""One config dataclass per run, read from JSON, validated on construction.

    {"method": "dpo", "base_model": "tiny", "dataset": "snap.jsonl", "output_dir": "runs/42",
     "adapter": "lora", "max_steps": 200, "dpo": {"beta": 0.1}}

Every field has a default except `method` and `output_dir`. Unknown keys are rejected (a typo must not silently
train with a default). Method-specific settings live in their own section (`dpo`, `kto`, `ppo`, ...); a section
for another method is accepted and ignored, so one UI form can carry all of them.

This module imports nothing heavy (no torch): the web app may import it to validate a run's config.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from typing import Any

METHODS = ("reward", "dpo", "kto", "sft", "ppo", "rloo", "grpo", "generate", "evaluate", "merge", "score")
ADAPTERS = ("lora", "qlora", "prompt_tuning", "full")
PRECISIONS = ("auto", "bf16", "fp16", "fp32")
ATTN_IMPLEMENTATIONS = ("auto", "sdpa", "flash_attention_2", "eager")
REPORTERS = ("auto", "none", "tensorboard", "mlflow", "wandb")
OPTIMIZERS = (
    "adamw_torch",
    "adamw_torch_fused",
    "adamw_8bit",  # bitsandbytes 8-bit AdamW (works on CPU too)
    "adamw_bnb_8bit",
    "paged_adamw_8bit",
    "paged_adamw_32bit",
    "lion_8bit",
    "adafactor",
    "sgd",
)
# Methods that train a causal LM with a TRL trainer and may use peft prompt tuning.
PROMPT_TUNING_METHODS = ("sft", "dpo", "kto")
TRAINING_METHODS = ("reward", "dpo", "kto", "sft", "ppo", "rloo", "grpo")
ONLINE_METHODS = ("ppo", "rloo", "grpo")  # sample from the policy and score with a reward checkpoint

# Default learning rates by method and adapter family, chosen on the planted task (bench/training/planted.py: one
# epoch of 800 pairs on the built-in `small` model must learn the planted preference). LoRA: reward and SFT 5e-4,
# inside the usual 1e-4..1e-3 for LoRA on 0.5-8B models. DPO and KTO 2e-4: at 5e-5 (the top of the 5e-6..5e-5
# usual for big models) DPO ranks held-out pairs right but leaves what the model samples unchanged; 2e-4 is the
# rate QLoRA uses for 7-65B models, and DPO's beta keeps the policy near the reference. PPO, RLOO and GRPO 1e-4: at
# 5e-5 the policy stayed where it was (KL 3e-4 per token after 100 steps). Full fine-tuning rates are the usual
# small ones.
DEFAULT_LEARNING_RATES = {
    "lora": {"reward": 5e-4, "sft": 5e-4, "dpo": 2e-4, "kto": 2e-4, "ppo": 1e-4, "rloo": 1e-4, "grpo": 1e-4},
    "full": {"reward": 1e-5, "sft": 2e-5, "dpo": 1e-6, "kto": 1e-6, "ppo": 1e-6, "rloo": 1e-6, "grpo": 1e-6},
    "prompt_tuning": {"reward": 3e-2, "sft": 3e-2, "dpo": 3e-2, "kto": 3e-2, "ppo": 3e-2, "rloo": 3e-2, "grpo": 3e-2},
}


def _check(condition: bool, name: str, message: str) -> None:
    if not condition:
        raise ValueError(f"{name}: {message}")


@dataclass
class RewardSection:
    use_margin: bool = True  # use the dataset's `margin` column (from pairwise strength) when present
    center_rewards_coefficient: float | None = None  # e.g. 0.01 pushes mean reward towards 0 (Llama 2)


@dataclass
class DPOSection:
    beta: float = 0.1  # strength of the KL pull towards the reference model
    loss_type: str | list[str] = "sigmoid"  # TRL loss name(s): sigmoid, ipo, hinge, robust, sppo_hard, apo_zero, ...
    label_smoothing: float = 0.0  # conservative DPO / robust DPO noise rate, in [0, 0.5)
    precompute_ref_log_probs: bool = False  # compute reference log-probs once up front (saves memory and time)

    def __post_init__(self):
        _check(self.beta > 0, "dpo.beta", "must be > 0")
        _check(0 <= self.label_smoothing < 0.5, "dpo.label_smoothing", "must be in [0, 0.5)")
        _check(isinstance(self.loss_type, (str, list)) and bool(self.loss_type), "dpo.loss_type", "a name or list")


@dataclass
class KTOSection:
    beta: float = 0.1
    desirable_weight: float = 1.0  # raise when thumbs-up rows are rarer than thumbs-down rows
    undesirable_weight: float = 1.0
    precompute_ref_log_probs: bool = False

    def __post_init__(self):
        _check(self.beta > 0, "kto.beta", "must be > 0")
        _check(self.desirable_weight > 0, "kto.desirable_weight", "must be > 0")
        _check(self.undesirable_weight > 0, "kto.undesirable_weight", "must be > 0")


@dataclass
class SFTSection:
    assistant_only_loss: bool = False  # for `messages` rows: loss on assistant turns only (needs {% generation %})
    completion_only_loss: bool = True  # `messages` rows ending with an assistant turn: loss on that turn only
    #                                    (split into prompt and completion); false: the whole conversation
    packing: bool = False  # pack several short rows into one max_length sequence (padding-free, position ids
    #                        restart per row); a run is refused if the model's attention lets packed rows mix


@dataclass
class PPOSection:
    rollout_batch_size: int = 8  # prompts per rollout; one PPO update per rollout (`max_steps` counts updates)
    mini_batch_size: int = 4  # rollouts per optimizer step inside an update
    ppo_epochs: int = 4  # passes over each rollout batch
    max_new_tokens: int = 48  # at 24, a fifth to a third of the built-in model's answers were cut off before their end
    temperature: float = 1.0
    top_p: float = 1.0
    kl_coef: float = 0.05  # per-token KL penalty to the reference (the base with adapters off); the start value
    #                        when kl_target is set
    kl_target: float | None = 6.0  # adaptive KL (Ziegler et al. 2019; TRL's PPO default): steer kl_coef to keep the KL
    #                                per response near this many nats; None keeps kl_coef fixed
    kl_horizon: int = 10000  # adaptive KL: samples over which kl_coef moves by at most 20% of the error
    gamma: float = 1.0  # discount
    lam: float = 0.95  # GAE lambda
    cliprange: float = 0.2  # policy ratio clip
    cliprange_value: float = 0.2  # value prediction clip
    vf_coef: float = 0.1  # value loss weight
    whiten_rewards: bool = False
    missing_eos_penalty: float | None = 1.0  # subtracted from the score of a response that reaches max_new_tokens
    #                                          without ending its turn; None turns it off

    def __post_init__(self):
        for name in ("rollout_batch_size", "mini_batch_size", "ppo_epochs", "max_new_tokens"):
            _check(getattr(self, name) >= 1, f"ppo.{name}", "must be >= 1")
        _check(self.rollout_batch_size % self.mini_batch_size == 0, "ppo.mini_batch_size", "must divide rollout_batch_size")
        _check(self.temperature > 0, "ppo.temperature", "must be > 0")
        _check(0 < self.top_p <= 1, "ppo.top_p", "must be in (0, 1]")
        _check(self.kl_coef >= 0, "ppo.kl_coef", "must be >= 0")
        _check(0 <= self.gamma <= 1, "ppo.gamma", "must be in [0, 1]")
        _check(0 <= self.lam <= 1, "ppo.lam", "must be in [0, 1]")
        _check(self.cliprange > 0, "ppo.cliprange", "must be > 0")
        _check(self.cliprange_value > 0, "ppo.cliprange_value", "must be > 0")
        _check(self.vf_coef >= 0, "ppo.vf_coef", "must be >= 0")
        _check(self.kl_target is None or self.kl_target > 0, "ppo.kl_target", "must be > 0, or null for a fixed kl_coef")
        _check(self.kl_horizon >= 1, "ppo.kl_horizon", "must be >= 1")


@dataclass
class RLOOSection:
    num_generations: int = 4  # completions per prompt; batch_size * grad_accum must be a multiple of it
    max_new_tokens: int = 24
    temperature: float = 1.0
    top_p: float = 1.0
    beta: float = 0.05  # KL coefficient to the reference (the base with adapters off)
    num_iterations: int = 1  # optimisation passes per generated batch

    def __post_init__(self):
        _check(self.num_generations >= 2, "rloo.num_generations", "must be >= 2 (leave-one-out baseline)")
        _check(self.max_new_tokens >= 1, "rloo.max_new_tokens", "must be >= 1")
        _check(self.temperature > 0, "rloo.temperature", "must be > 0")
        _check(self.beta >= 0, "rloo.beta", "must be >= 0")


@dataclass
class GRPOSection:
    num_generations: int = 4  # completions per prompt, compared within their group; must divide batch_size * grad_accum
    max_new_tokens: int = 24
    temperature: float = 1.0
    top_p: float = 1.0
    beta: float = 0.04  # KL coefficient to the reference (the base with adapters off); 0 loads no reference
    num_iterations: int = 1  # optimisation passes per generated batch

    def __post_init__(self):
        _check(self.num_generations >= 2, "grpo.num_generations", "must be >= 2 (a group to compare within)")
        _check(self.max_new_tokens >= 1, "grpo.max_new_tokens", "must be >= 1")
        _check(self.temperature > 0, "grpo.temperature", "must be > 0")
        _check(0 < self.top_p <= 1, "grpo.top_p", "must be in (0, 1]")
        _check(self.beta >= 0, "grpo.beta", "must be >= 0")
        _check(self.num_iterations >= 1, "grpo.num_iterations", "must be >= 1")


@dataclass
class GenerateSection:
    prompts: str | None = None  # JSONL of prompts; defaults to `dataset`
    checkpoint: str | None = None  # adapter or full-model dir to sample from; None = the base model
    n: int = 2  # responses per prompt
    temperature: float = 0.8  # 0 = greedy
    top_p: float = 0.95
    max_new_tokens: int = 128
    max_prompts: int | None = None  # cap on prompts read
    stream: bool = False  # one response at a time, reporting its text as it grows ("text" events): arena battles

    def __post_init__(self):
        _check(self.n >= 1, "generate.n", "must be >= 1")
        _check(self.temperature >= 0, "generate.temperature", "must be >= 0")
        _check(0 < self.top_p <= 1, "generate.top_p", "must be in (0, 1]")
        _check(self.max_new_tokens >= 1, "generate.max_new_tokens", "must be >= 1")


@dataclass
class EvaluateSection:
    kind: str = "reward_accuracy"  # reward_accuracy: the reward checkpoint on held-out pairs (`dataset`);
    #                                win_rate: `policy_checkpoint` vs `baseline_checkpoint` judged by the reward checkpoint
    policy_checkpoint: str | None = None
    baseline_checkpoint: str | None = None  # None = the base model
    max_prompts: int | None = 200
    max_new_tokens: int = 64
    temperature: float = 0.7
    top_p: float = 0.95
    ci: str = "wilson"  # wilson | bootstrap (95% interval on the win-rate, ties count half)
    bootstrap_samples: int = 2000

    def __post_init__(self):
        _check(self.kind in ("reward_accuracy", "win_rate"), "evaluate.kind", "reward_accuracy or win_rate")
        _check(self.ci in ("wilson", "bootstrap"), "evaluate.ci", "wilson or bootstrap")
        _check(self.max_new_tokens >= 1, "evaluate.max_new_tokens", "must be >= 1")
        _check(self.bootstrap_samples >= 100, "evaluate.bootstrap_samples", "must be >= 100")


@dataclass
class MergeSection:
    adapter: str | None = None  # the adapter checkpoint dir to merge into `base_model`; written to output_dir
    task: str = "causal"  # causal (a policy) | seq_cls (a reward model)

    def __post_init__(self):
        _check(self.task in ("causal", "seq_cls"), "merge.task", "causal or seq_cls")


SECTIONS = {
    "reward": RewardSection,
    "dpo": DPOSection,
    "kto": KTOSection,
    "sft": SFTSection,
    "ppo": PPOSection,
    "rloo": RLOOSection,
    "grpo": GRPOSection,
    "generate": GenerateSection,
    "evaluate": EvaluateSection,
    "merge": MergeSection,
}


@dataclass
class RunConfig:
    method: str  # reward | dpo | kto | sft | ppo | rloo | grpo | generate | evaluate | merge | score
    output_dir: str  # checkpoints, generations and results go here (created if missing)
    base_model: str = "tiny"  # "tiny" (built-in), a local model directory, or a Hugging Face Hub id
    data_dir: str = "var/data"  # where the built-in tiny model is built (data_dir/models/tiny-v2)
    dataset: str | None = None  # JSONL file in TRL's formats (see training/engine/data.py); score: {key, prompt, completion}
    reward_checkpoint: str | None = None  # ppo / rloo / grpo / evaluate / score: a reward adapter or full model dir
    reward_base_model: str | None = None  # the reward adapter's base ("tiny", a directory, a Hub id); None: the one
    #                                       the checkpoint names

    # Adapter
    adapter: str = "lora"  # lora | qlora (4-bit NF4 base, double quant) | prompt_tuning | full
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_target_modules: list[str] | str | None = None  # None = per architecture (q/k/v/o projections for
    #                                                     Llama-likes); "all-linear" = every linear layer (peft)
    num_virtual_tokens: int = 8  # prompt tuning

    # Schedule
    max_steps: int = -1  # optimizer steps (PPO: updates); -1 = run num_epochs over the dataset
    num_epochs: float = 1.0
    batch_size: int = 8  # per device (PPO: rows per forward pass without gradients; ppo.* sets its batches)
    grad_accum: int = 1
    learning_rate: float | None = None  # None = DEFAULT_LEARNING_RATES[adapter family][method]
    lr_scheduler: str = "linear"  # any transformers scheduler name: linear, cosine, constant, ...
    warmup_ratio: float = 0.0
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    optim: str = "adamw_torch"  # or adamw_8bit (bitsandbytes), paged_adamw_8bit, ...
    seed: int = 42
    max_length: int = 512  # tokens per sequence (prompt + completion)
    eval_fraction: float = 0.1  # held out from `dataset` for evaluation (reward accuracy, eval loss); 0 = none
    save_steps: int = 0  # also save every N steps (0 = only the final checkpoint)
    logging_steps: int = 1
    report_to: str | list[str] = "auto"  # experiment tracking: auto = tensorboard (event files in output_dir/tensorboard),
    #   plus mlflow when MLFLOW_TRACKING_URI is set and wandb when WANDB_API_KEY or WANDB_MODE is; or a list of
    #   tensorboard, mlflow, wandb; or none
    resume_from_checkpoint: str | None = None  # a checkpoint-<step> dir written by an earlier run of this config

    # Hardware
    precision: str = "auto"  # compute dtype (autocast): auto = bf16 on a GPU that supports it, fp32 elsewhere.
    #                          Trainable weights are fp32 masters whatever this says (see common.DtypePolicy).
    attn_implementation: str = "auto"  # auto | sdpa | flash_attention_2 | eager; auto = flash_attention_2 on a GPU
    #                                    with flash-attn installed, else sdpa
    distributed: str = "ddp"  # with several GPUs (the run's `gpus`): ddp (a model per GPU) | fsdp (sharded)
    threads: int | None = None  # torch CPU threads; None = 1 on CPU (oversubscription is 15-50x slower), untouched on GPU
    gradient_checkpointing: bool = False

    # Method sections
    reward: RewardSection = field(default_factory=RewardSection)
    dpo: DPOSection = field(default_factory=DPOSection)
    kto: KTOSection = field(default_factory=KTOSection)
    sft: SFTSection = field(default_factory=SFTSection)
    ppo: PPOSection = field(default_factory=PPOSection)
    rloo: RLOOSection = field(default_factory=RLOOSection)
    grpo: GRPOSection = field(default_factory=GRPOSection)
    generate: GenerateSection = field(default_factory=GenerateSection)
    evaluate: EvaluateSection = field(default_factory=EvaluateSection)
    merge: MergeSection = field(default_factory=MergeSection)

    def __post_init__(self):
        _check(self.method in METHODS, "method", f"must be one of {', '.join(METHODS)}; got {self.method!r}")
        _check(bool(self.output_dir), "output_dir", "is required")
        _check(bool(self.base_model), "base_model", "is required")
        _check(self.adapter in ADAPTERS, "adapter", f"must be one of {', '.join(ADAPTERS)}; got {self.adapter!r}")
        if self.adapter == "prompt_tuning":
            _check(
                self.method in PROMPT_TUNING_METHODS + ("generate", "evaluate"),
                "adapter",
                f"prompt_tuning is supported for {', '.join(PROMPT_TUNING_METHODS)}",
            )
        needs_dataset = self.method in TRAINING_METHODS + ("score",) or (
            self.method == "evaluate" and self.evaluate.kind == "reward_accuracy"
        )
        if self.method == "generate":
            _check(bool(self.dataset or self.generate.prompts), "generate.prompts", "or dataset is required")
        elif self.method == "evaluate" and self.evaluate.kind == "win_rate":
            _check(bool(self.dataset), "dataset", "is required (prompts to compare on)")
        elif needs_dataset:
            _check(bool(self.dataset), "dataset", "is required")
        if self.method in ("evaluate", "score"):
            _check(bool(self.reward_checkpoint), "reward_checkpoint", f"is required to {self.method}")
        if self.method == "merge":
            _check(bool(self.merge.adapter), "merge.adapter", "is required (the adapter checkpoint to merge)")
        if self.method == "evaluate" and self.evaluate.kind == "win_rate":
            _check(bool(self.evaluate.policy_checkpoint), "evaluate.policy_checkpoint", "is required for win_rate")
        _check(self.lora_r >= 1, "lora_r", "must be >= 1")
        _check(self.lora_alpha >= 1, "lora_alpha", "must be >= 1")
        _check(0 <= self.lora_dropout < 1, "lora_dropout", "must be in [0, 1)")
        _check(
            self.lora_target_modules is None or isinstance(self.lora_target_modules, (list, str)),
            "lora_target_modules",
            "a list of module names, 'all-linear', or null",
        )
        _check(self.num_virtual_tokens >= 1, "num_virtual_tokens", "must be >= 1")
        _check(self.max_steps == -1 or self.max_steps >= 1, "max_steps", "must be >= 1, or -1 to use num_epochs")
        _check(self.max_steps >= 1 or self.num_epochs > 0, "num_epochs", "must be > 0 when max_steps is -1")
        _check(self.batch_size >= 1, "batch_size", "must be >= 1")
        _check(self.grad_accum >= 1, "grad_accum", "must be >= 1")
        _check(self.learning_rate is None or self.learning_rate > 0, "learning_rate", "must be > 0")
        _check(0 <= self.warmup_ratio < 1, "warmup_ratio", "must be in [0, 1)")
        _check(self.optim in OPTIMIZERS, "optim", f"must be one of {', '.join(OPTIMIZERS)}; got {self.optim!r}")
        _check(self.max_length >= 8, "max_length", "must be >= 8")
        _check(0 <= self.eval_fraction < 1, "eval_fraction", "must be in [0, 1)")
        _check(self.save_steps >= 0, "save_steps", "must be >= 0")
        _check(self.logging_steps >= 1, "logging_steps", "must be >= 1")
        reports = [self.report_to] if isinstance(self.report_to, str) else self.report_to
        _check(isinstance(reports, list) and all(r in REPORTERS for r in reports) and bool(reports), "report_to",
               f"auto, none, or a list of {', '.join(r for r in REPORTERS if r not in ('auto', 'none'))}")
        _check(self.precision in PRECISIONS, "precision", f"must be one of {', '.join(PRECISIONS)}")
        _check(self.threads is None or self.threads >= 1, "threads", "must be >= 1")
        _check(self.distributed in ("ddp", "fsdp"), "distributed", f"must be ddp or fsdp; got {self.distributed!r}")
        if self.distributed == "fsdp":
            _check(self.method not in ("ppo", "generate", "evaluate", "merge", "score"), "distributed",
                   f"fsdp shards TRL trainers (reward, dpo, kto, sft, rloo, grpo); {self.method} runs with ddp")
            _check(self.adapter != "qlora", "distributed", "fsdp is not offered with qlora; use ddp")
        _check(self.attn_implementation in ATTN_IMPLEMENTATIONS, "attn_implementation",
               f"must be one of {', '.join(ATTN_IMPLEMENTATIONS)}; got {self.attn_implementation!r}")
        if self.method in ("rloo", "grpo"):
            section = getattr(self, self.method)
            _check(
                (self.batch_size * self.grad_accum) % section.num_generations == 0,
                f"{self.method}.num_generations",
                "must divide batch_size * grad_accum",
            )
        if self.method == "kto":
            _check(self.batch_size >= 2, "batch_size", "KTO needs batch_size >= 2 (its KL term)")
        if self.method == "ppo":
            minibatches = self.ppo.rollout_batch_size // self.ppo.mini_batch_size
            _check(minibatches % self.grad_accum == 0, "grad_accum",
                   f"must divide the {minibatches} minibatches of a PPO rollout (rollout_batch_size / mini_batch_size)")
            _check(self.precision != "fp16", "precision", "fp16 is not offered for ppo (no loss scaling); use bf16")
        if self.method == "sft" and self.sft.packing:
            # Packed rows are told apart by position ids restarting at 0; virtual tokens in front break that.
            _check(self.adapter != "prompt_tuning", "sft.packing", "cannot be used with adapter prompt_tuning")

    @property
    def adapter_family(self) -> str:
        return "lora" if self.adapter in ("lora", "qlora") else self.adapter

    @property
    def lr(self) -> float:
        """The learning rate to use: the configured one or the per-method default."""
        if self.learning_rate is not None:
            return self.learning_rate
        return DEFAULT_LEARNING_RATES[self.adapter_family].get(self.method, 5e-5)

    @property
    def checkpoint_kind(self) -> str:
        """What a saved checkpoint holds: a peft adapter ("lora", "prompt_tuning") or a full model ("full")."""
        return {"lora": "lora", "qlora": "lora", "prompt_tuning": "prompt_tuning", "full": "full"}[self.adapter]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunConfig:
        if not isinstance(data, dict):
            raise ValueError(f"config: expected a JSON object, got {type(data).__name__}")
        _reject_unknown(cls, data, "config")
        _check_types(cls, data, "")
        kwargs = dict(data)
        for name, section_cls in SECTIONS.items():
            if name in kwargs:
                section = kwargs[name]
                if not isinstance(section, dict):
                    raise ValueError(f"{name}: expected an object, got {type(section).__name__}")
                _reject_unknown(section_cls, section, name)
                _check_types(section_cls, section, name)
                kwargs[name] = section_cls(**section)
        if "method" not in kwargs:
            raise ValueError("method: is required")
        if "output_dir" not in kwargs:
            raise ValueError("output_dir: is required")
        return cls(**kwargs)

    @classmethod
    def from_json(cls, path_or_dict: str | os.PathLike | dict[str, Any]) -> RunConfig:
        """Read a config from a JSON file path, a JSON string, or an already-parsed dict."""
        if isinstance(path_or_dict, dict):
            return cls.from_dict(path_or_dict)
        text = str(path_or_dict)
        if text.lstrip().startswith("{"):
            return cls.from_dict(json.loads(text))
        with open(path_or_dict, encoding="utf-8") as f:
            try:
                data = json.load(f)
            except json.JSONDecodeError as exc:
                raise ValueError(f"config: {path_or_dict} is not valid JSON: {exc}") from exc
        return cls.from_dict(data)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_TYPES = {"int": "a whole number", "float": "a number", "str": "a string", "bool": "true or false", "None": "null",
          "list[str]": "a list of strings"}


def _matches(value: Any, kind: str) -> bool:
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "float":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "str":
        return isinstance(value, str)
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "None":
        return value is None
    if kind == "list[str]":
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    return True  # a section (checked on its own), Any, dict


def _check_types(cls: type, data: dict[str, Any], where: str) -> None:
    """Each value of the JSON has its field's type (the annotation, e.g. ``int``, ``str | None``, ``list[str]``):
    "zero" for a seed, or a list for a beta, is refused by name here, not deep inside a trainer."""
    for f in dataclasses.fields(cls):
        if f.name not in data or not isinstance(f.type, str):
            continue
        kinds = [k.strip() for k in f.type.split("|")]
        if not any(_matches(data[f.name], k) for k in kinds):
            wanted = " or ".join(_TYPES.get(k, k) for k in kinds)
            raise ValueError(f"{where + '.' if where else ''}{f.name}: must be {wanted}, got {data[f.name]!r:.60}")


def _reject_unknown(cls: type, data: dict[str, Any], where: str) -> None:
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(
            f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; valid keys are {', '.join(sorted(known))}"
        )
