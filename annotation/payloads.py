"""Annotation payloads per mode: validate what the client sent and resolve display positions.

The client speaks in display positions ("A" is the first response it was shown); the stored
payload names response ids, so the display order never leaks into training data.
"""
from __future__ import annotations

from typing import Any

from django.conf import settings

from .errors import Invalid
from .project_config import STRENGTHS, judgement_mode

MAX_COMMENT_CHARS = 10_000
PAIR_CHOICES = ("A", "B", "tie", "both_bad")


def _err(field: str, message: str):
    raise Invalid(message, field=f"payload.{field}")


def _comment(payload: dict) -> str:
    comment = payload.get("comment", "")
    if comment is None:
        return ""
    if not isinstance(comment, str):
        _err("comment", "must be a string")
    if len(comment) > MAX_COMMENT_CHARS:
        _err("comment", f"must be at most {MAX_COMMENT_CHARS} characters")
    return comment


def _written(value, field: str) -> str:
    """A text the rater wrote (a demonstration, an improved response): non-blank, storable, not too long."""
    if not isinstance(value, str):
        _err(field, "must be a string")
    if not value.strip():
        _err(field, "is empty: write the assistant's answer")
    if len(value) > settings.PS_MAX_TEXT_CHARS:
        _err(field, f"is {len(value)} characters; the limit is {settings.PS_MAX_TEXT_CHARS}")
    if "\x00" in value:
        _err(field, "holds a NUL character, which cannot be stored")
    return value


def _improved(payload: dict, config: dict, side: dict, allowed: tuple[str, ...], why: str) -> dict | None:
    """The rater's rewrite of one shown response ({"response": "A", "text": ...}), resolved to its id; None
    when there is none. ``allowed``: the positions that may be improved here (``why`` says which, if none)."""
    value = payload.get("improved")
    if value is None:
        return None
    if not config.get("improve"):
        _err("improved", "this project does not ask for improved responses")
    if not isinstance(value, dict):
        _err("improved", 'must be an object {"response": position, "text": the improved response}')
    _known_keys(value, {"response", "text"}, prefix="improved.")
    if not allowed:
        _err("improved", why)
    if value.get("response") not in allowed:
        _err("improved.response", f"must be {' or '.join(allowed)}: {why}")
    return {"response": side[value["response"]], "text": _written(value.get("text"), "improved.text")}


def _known_keys(payload: dict, allowed: set[str], prefix: str = ""):
    unknown = sorted(set(payload) - allowed)
    if unknown:
        _err(prefix + unknown[0], f"unknown field (allowed: {', '.join(sorted(allowed))})")


def _score(value: Any, field: str, scale: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= scale:
        _err(field, f"must be an integer from 1 to {scale}")
    return value


def resolve_rating(payload: dict, config: dict, display_order: list[int]) -> dict:
    _known_keys(payload, {"overall", "criteria", "flags", "comment", "improved"})
    if "overall" not in payload:
        _err("overall", "is required")
    scale = config["scale"]
    criteria = payload.get("criteria") or {}
    if not isinstance(criteria, dict):
        _err("criteria", "must be an object of criterion: score")
    for name, value in criteria.items():
        if name not in config["criteria"]:
            _err(f"criteria.{name}", "is not a criterion of this project")
        _score(value, f"criteria.{name}", scale)
    flags = payload.get("flags") or []
    if not isinstance(flags, list) or not all(isinstance(f, str) for f in flags):
        _err("flags", "must be a list of flag names")
    for flag in flags:
        if flag not in config["flags"]:
            _err("flags", f"'{flag}' is not a flag of this project")
    resolved = {
        "response": display_order[0],
        "overall": _score(payload["overall"], "overall", scale),
        "criteria": criteria,
        "flags": sorted(set(flags)),
        "comment": _comment(payload),
    }
    improved = _improved(payload, config, {"A": display_order[0]}, ("A",), "the rated response is A")
    if improved is not None:
        resolved["improved"] = improved
    return resolved


def resolve_pairwise(payload: dict, config: dict, display_order: list[int]) -> dict:
    _known_keys(payload, {"choice", "strength", "criteria", "comment", "improved"})
    choice = payload.get("choice")
    if choice not in PAIR_CHOICES:
        _err("choice", f"must be one of {', '.join(PAIR_CHOICES)}")
    if choice == "tie" and not config["allow_tie"]:
        _err("choice", "ties are not allowed in this project")
    if choice == "both_bad" and not config["allow_both_bad"]:
        _err("choice", "'both_bad' is not allowed in this project")
    side = {"A": display_order[0], "B": display_order[1]}
    strength = payload.get("strength")
    if choice in ("A", "B"):
        if config["strength"]:
            if strength not in STRENGTHS:
                _err("strength", f"must be one of {', '.join(STRENGTHS)}")
        elif strength is not None:
            _err("strength", "this project does not ask for strength")
    elif strength is not None:
        _err("strength", f"must be empty when the choice is '{choice}'")
    criteria_in = payload.get("criteria") or {}
    if not isinstance(criteria_in, dict):
        _err("criteria", "must be an object of criterion: A | B | tie")
    criteria = {}
    for name, value in criteria_in.items():
        if name not in config["criteria"]:
            _err(f"criteria.{name}", "is not a criterion of this project")
        if value not in ("A", "B", "tie"):
            _err(f"criteria.{name}", "must be A, B or tie")
        criteria[name] = side.get(value, "tie")
    chosen = side.get(choice)
    rejected = side["B" if choice == "A" else "A"] if chosen else None
    resolved = {
        "outcome": {"A": "win", "B": "win", "tie": "tie", "both_bad": "both_bad"}[choice],
        "chosen": chosen,
        "rejected": rejected,
        "strength": strength if chosen else None,
        "criteria": criteria,
        "comment": _comment(payload),
    }
    better = (choice,) if chosen else ()
    improved = _improved(payload, config, side, better, "only the better response is improved; choose A or B first")
    if improved is not None:
        resolved["improved"] = improved
    return resolved


def resolve_ranking(payload: dict, config: dict, display_order: list[int]) -> dict:
    _known_keys(payload, {"order", "not_rankable", "comment"})
    not_rankable = payload.get("not_rankable", False)
    if not isinstance(not_rankable, bool):
        _err("not_rankable", "must be true or false")
    order = payload.get("order") or []
    if not isinstance(order, list) or not all(isinstance(group, list) and group for group in order):
        _err("order", "must be a list of non-empty lists of response ids, best first")
    flat = [rid for group in order for rid in group]
    if not_rankable:
        if flat:
            _err("order", "must be empty when not_rankable is true")
    else:
        if not all(isinstance(rid, int) and not isinstance(rid, bool) for rid in flat):
            _err("order", "response ids must be integers")
        if sorted(flat) != sorted(display_order) or len(set(flat)) != len(flat):
            _err("order", f"must rank each of the responses {sorted(display_order)} exactly once")
        if not config["allow_ties"] and any(len(group) > 1 for group in order):
            _err("order", "ties are not allowed in this project")
    return {"order": order, "not_rankable": not_rankable, "comment": _comment(payload)}


def resolve_arena(payload: dict, config: dict, display_order: list[int]) -> dict:
    """An arena vote: a pairwise choice with no strength (A, B, tie or both_bad)."""
    return resolve_pairwise(payload, {**config, "strength": False}, display_order)


def resolve_demonstration(payload: dict, config: dict, display_order: list[int]) -> dict:
    """The rater's answer to the prompt. ``draft``: "A" when they started from the model draft shown (the
    item's one response), null when they wrote from scratch."""
    _known_keys(payload, {"text", "draft", "comment"})
    text = _written(payload.get("text"), "text")
    draft = payload.get("draft")
    if draft is not None:
        if not display_order:
            _err("draft", "this item has no model draft; leave it out")
        if draft != "A":
            _err("draft", "must be \"A\" (the draft shown) or null (written from scratch)")
    return {"text": text, "draft": display_order[0] if draft else None, "comment": _comment(payload)}


RESOLVERS = {"rating": resolve_rating, "pairwise": resolve_pairwise, "ranking": resolve_ranking,
             "demonstration": resolve_demonstration, "arena": resolve_arena}


def resolve_payload(mode: str, payload: dict, config: dict, display_order: list[int]) -> dict:
    """The payload (an object: ``annotation.submissions`` checks that) resolved for ``mode``; raises Invalid
    naming the field."""
    return RESOLVERS[mode](payload, config, display_order)


def imported_payload(mode: str, chosen: int, others: list[int]) -> dict:
    """The resolved payload of a judgement that came with imported data: ``chosen`` preferred to ``others``."""
    if mode == "pairwise":
        return {"outcome": "win", "chosen": chosen, "rejected": others[0], "strength": None,
                "criteria": {}, "comment": ""}
    return {"order": [[chosen]] + [[o] for o in others], "not_rankable": False, "comment": ""}


def gold_correct(mode: str, gold: dict | None, resolved: dict) -> bool | None:
    """Whether an answer agrees with the gold answer (both resolved); None when there is no gold."""
    if not gold or mode == "demonstration":
        return None
    if judgement_mode(mode) == "pairwise":
        return gold.get("outcome") == resolved["outcome"] and gold.get("chosen") == resolved["chosen"]
    if mode == "rating":
        return abs(int(gold.get("overall", 0)) - resolved["overall"]) <= int(gold.get("tolerance", 1))
    if gold.get("not_rankable") or resolved["not_rankable"]:
        return bool(gold.get("not_rankable")) == resolved["not_rankable"]
    return set(gold["order"][0]) == set(resolved["order"][0])  # the best response(s) agree
