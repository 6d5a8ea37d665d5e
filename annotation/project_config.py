"""The per-project ``config``: defaults per mode, and validation that names the field at fault."""
from __future__ import annotations

from typing import Any, Callable

from .boundary import whole_number
from .errors import Invalid

MODES = ("rating", "pairwise", "ranking", "demonstration", "arena")
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
    "arena": {
        # Who answers: [{"base_model": NAME} | {"checkpoint": ID} | {"endpoint": NAME}], two or more (none: the arena
        # holds recorded battles only). Annotation checks their shape; training checks that they exist (training.arena).
        "sources": [],
        "allow_tie": True,
        "allow_both_bad": True,
        "sampling": "uniform",  # which two sources answer: uniform, or widest_interval (least known first)
        "max_new_tokens": 256,  # sampling for every source
        "temperature": 0.7,
        "top_p": 0.95,
    },
}

ARENA_SOURCE_KINDS = ("base_model", "checkpoint", "endpoint")
ARENA_SAMPLING = ("uniform", "widest_interval")
MAX_ARENA_SOURCES = 32
SOURCE_NAME_CHARS = 100


def judgement_mode(mode: str) -> str:
    """The shape of a project's judgements: an arena vote is a pairwise judgement (a choice between A and B,
    stored with response ids), so exports, quality and training read arena projects as pairwise ones."""
    return "pairwise" if mode == "arena" else mode


def _fail(field: str, message: str):
    raise Invalid(message, field=f"config.{field}")


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


def _arena_sources(cfg) -> None:
    """``sources``: two or more distinct ``{"base_model": NAME}``, ``{"checkpoint": ID}`` or ``{"endpoint": NAME}``, or
    none (an arena of recorded battles, until it has sources)."""
    sources = cfg["sources"]
    if not isinstance(sources, list) or len(sources) == 1 or len(sources) > MAX_ARENA_SOURCES:
        _fail("sources", f"must be a list of 2 to {MAX_ARENA_SOURCES} sources, each "
                         '{"base_model": name}, {"checkpoint": id} or {"endpoint": name} (or empty: no new battles)')
    seen = set()
    for i, source in enumerate(sources):
        field = f"sources[{i}]"
        if not isinstance(source, dict) or len(source) != 1 or next(iter(source)) not in ARENA_SOURCE_KINDS:
            _fail(field, 'must be {"base_model": name}, {"checkpoint": id} or {"endpoint": name}')
        ((kind, value),) = source.items()
        if kind == "checkpoint":
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                _fail(f"{field}.checkpoint", f"must be a checkpoint id (a positive integer), got {value!r}")
        elif not isinstance(value, str) or not value.strip() or len(value) > SOURCE_NAME_CHARS:
            _fail(f"{field}.{kind}", f"must be a name of 1 to {SOURCE_NAME_CHARS} characters, got {value!r}")
        if (kind, value) in seen:
            _fail(field, f"repeats {kind} {value!r}")
        seen.add((kind, value))


# Checks that another app adds for a mode, run on a project's full config when it is created or changed: training
# checks that an arena's sources exist (annotation knows only their shape). Each raises Invalid naming the field.
_CONFIG_CHECKS: dict[str, list[Callable[[dict], None]]] = {}


def register_config_check(mode: str, check: Callable[[dict], None]) -> None:
    if check not in _CONFIG_CHECKS.setdefault(mode, []):
        _CONFIG_CHECKS[mode].append(check)


def validate_project_config(mode: str, config: dict | None) -> dict:
    """Return the full config for ``mode`` (defaults filled in), or raise Invalid naming the field."""
    cfg = _validate_shape(mode, config)
    for check in _CONFIG_CHECKS.get(mode, []):
        check(cfg)
    return cfg


def _validate_shape(mode: str, config: dict | None) -> dict:
    if mode not in MODES:
        raise Invalid(f"must be one of {', '.join(MODES)}", field="mode")
    config = config or {}
    if not isinstance(config, dict):
        raise Invalid("must be an object", field="config")
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
            1 <= (whole_number(k, max_digits=2) or 0) <= cfg["scale"] and isinstance(v, str)
            for k, v in labels.items()
        ):
            _fail("scale_labels", f"must map scale points (\"1\"..\"{cfg['scale']}\") to label strings")
    elif mode == "pairwise":
        for field in ("strength", "allow_tie", "allow_both_bad"):
            _bool(cfg, field)
        _int(cfg, "max_pairs_per_prompt", 1, 1000)
    elif mode == "arena":
        for field in ("allow_tie", "allow_both_bad"):
            _bool(cfg, field)
        _arena_sources(cfg)
        if cfg["sampling"] not in ARENA_SAMPLING:
            _fail("sampling", f"must be one of {', '.join(ARENA_SAMPLING)}, got {cfg['sampling']!r}")
        _int(cfg, "max_new_tokens", 1, 4096)
        _float(cfg, "temperature", 0, 5)
        _float(cfg, "top_p", 0.01, 1)
    elif mode == "ranking":
        _int(cfg, "k", 2, 10)
        _bool(cfg, "allow_ties")
    else:
        _bool(cfg, "start_from_draft")
        if cfg["gold_rate"]:
            _fail("gold_rate", "must be 0: a demonstration has no one right answer to check against")
    return cfg
