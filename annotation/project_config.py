"""The per-project ``config``: defaults per mode, and validation that names the field at fault."""
from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError

MODES = ("rating", "pairwise", "ranking", "demonstration")
STRENGTHS = ("negligible", "slight", "better", "significant")

# InstructGPT's metadata flags, the default for rating projects.
DEFAULT_FLAGS = [
    "fails_instruction",
    "hallucination",
    "harmful",
    "sexual_content",
    "violent_content",
    "inappropriate_for_customer_assistant",
    "refusal",
]

COMMON_DEFAULTS: dict[str, Any] = {
    "overlap": 1,  # annotations wanted per item
    "gold_rate": 0.0,  # share of served items that are gold, 0..1
    "gold_min_items": 5,  # gold answers seen before a rater can be paused
    "gold_min_accuracy": 0.6,  # below this (after gold_min_items) the rater is paused
    "blind": True,  # never show model names to raters
    "lease_seconds": None,  # None: the site default (PS_LEASE_SECONDS)
    "edit_window_seconds": 1800,  # how long a rater may edit their own annotation
    "criteria": [],
    "active_learning": False,  # order the queue by reward-model uncertainty
}

MODE_DEFAULTS: dict[str, dict[str, Any]] = {
    "rating": {
        "scale": 7,  # Likert 1..scale
        "scale_labels": {"1": "Terrible", "4": "Acceptable", "7": "Excellent"},
        "flags": DEFAULT_FLAGS,
        "kto_threshold": 5,  # ratings >= this are "desirable" in KTO exports
        "improve": False,  # offer "improve this response": the rater may rewrite the rated response (SFT data)
    },
    "pairwise": {
        "strength": True,  # ask for Llama 2's four-level strength
        "allow_tie": True,
        "allow_both_bad": True,
        "max_pairs_per_prompt": 6,  # all pairs of a prompt's responses, up to this cap
        "criteria": ["helpfulness", "safety"],
        "improve": False,  # offer "improve this response": the rater may rewrite the better one (SFT data)
    },
    "ranking": {
        "k": 4,  # responses per item
        "allow_ties": True,
    },
    "demonstration": {
        "start_from_draft": True,  # the editor opens with the model draft (if the item has one), else empty
    },
}


def _fail(field: str, message: str):
    raise ValidationError({f"config.{field}": [message]})


def _int(cfg, field, lo, hi):
    value = cfg[field]
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        _fail(field, f"must be an integer from {lo} to {hi}, got {value!r}")


def _float(cfg, field, lo, hi):
    value = cfg[field]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
        _fail(field, f"must be a number from {lo} to {hi}, got {value!r}")


def _bool(cfg, field):
    if not isinstance(cfg[field], bool):
        _fail(field, f"must be true or false, got {cfg[field]!r}")


def _names(cfg, field):
    value = cfg[field]
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        _fail(field, "must be a list of non-empty strings")
    if len(set(value)) != len(value):
        _fail(field, "must not repeat a name")
    if any(len(v) > 64 for v in value):
        _fail(field, "names must be at most 64 characters")


def validate_project_config(mode: str, config: dict | None) -> dict:
    """Return the full config for ``mode`` (defaults filled in), or raise ValidationError."""
    if mode not in MODES:
        raise ValidationError({"mode": [f"must be one of {', '.join(MODES)}"]})
    config = config or {}
    if not isinstance(config, dict):
        raise ValidationError({"config": ["must be an object"]})
    defaults = {**COMMON_DEFAULTS, **MODE_DEFAULTS[mode]}
    unknown = sorted(set(config) - set(defaults))
    if unknown:
        _fail(unknown[0], f"unknown option for a {mode} project (known: {', '.join(sorted(defaults))})")
    cfg = {**defaults, **config}
    if mode == "rating" and "scale" in config and "scale_labels" not in config:
        scale = cfg["scale"]
        if isinstance(scale, int) and not isinstance(scale, bool) and scale >= 2:
            cfg["scale_labels"] = {"1": "Terrible", str((scale + 1) // 2): "Acceptable", str(scale): "Excellent"}

    _int(cfg, "overlap", 1, 100)
    _float(cfg, "gold_rate", 0, 1)
    _int(cfg, "gold_min_items", 1, 10_000)
    _float(cfg, "gold_min_accuracy", 0, 1)
    _bool(cfg, "blind")
    _bool(cfg, "active_learning")
    if cfg["lease_seconds"] is not None:
        _int(cfg, "lease_seconds", 10, 7 * 24 * 3600)
    _int(cfg, "edit_window_seconds", 0, 30 * 24 * 3600)
    _names(cfg, "criteria")

    if mode in ("rating", "pairwise"):
        _bool(cfg, "improve")
    if mode == "rating":
        _int(cfg, "scale", 2, 10)
        _names(cfg, "flags")
        _int(cfg, "kto_threshold", 1, cfg["scale"])
        labels = cfg["scale_labels"]
        if not isinstance(labels, dict) or not all(
            isinstance(k, str) and k.isdigit() and 1 <= int(k) <= cfg["scale"] and isinstance(v, str)
            for k, v in labels.items()
        ):
            _fail("scale_labels", f"must map scale points (\"1\"..\"{cfg['scale']}\") to label strings")
    elif mode == "pairwise":
        for field in ("strength", "allow_tie", "allow_both_bad"):
            _bool(cfg, field)
        _int(cfg, "max_pairs_per_prompt", 1, 1000)
    elif mode == "ranking":
        _int(cfg, "k", 2, 10)
        _bool(cfg, "allow_ties")
    else:
        _bool(cfg, "start_from_draft")
        if cfg["gold_rate"]:
            _fail("gold_rate", "must be 0: a demonstration has no one right answer to check against")
    return cfg
