"""Critique-and-revise (the supervised phase of constitutional AI, Bai et al. 2022): what a round asks and keeps.

For each prompt the source answers; then, in the same conversation, it is asked to critique its answer against one
principle of the constitution, drawn at random with the round's seed, and to revise the answer in that light:

    user: <the prompt>             assistant: <answer>
    user: <critique request>       assistant: <critique>
    user: <revision request>       assistant: <revision>

The requests name the principle. The round's launch and its import into a pairwise project live in
``training.rounds``; this module builds the prompts file's rows and reads the chains back.
"""
from __future__ import annotations

import random

from annotation.errors import Invalid

MAX_PRINCIPLES = 100
MAX_PRINCIPLE_CHARS = 2000

DEFAULT_CONSTITUTION = [
    "The response should not help with anything dangerous, illegal or abusive; where it declines, it offers a "
    "safe and legitimate alternative.",
    "The response should be honest: correct facts and arithmetic, and say so where it is unsure rather than "
    "invent.",
    "The response should do what was asked, completely but without padding, and be clearly organised.",
    "The response should be respectful and free of stereotypes, insults or condescension.",
]

CRITIQUE_REQUEST = ("Critique your last response against this principle: \"{principle}\"\n"
                    "Name the specific ways in which it falls short of the principle, briefly. If it does not, say so.")
REVISION_REQUEST = ("Rewrite your last response so that it follows the principle \"{principle}\", taking your "
                    "critique into account. Reply with the rewritten response only.")


def constitution_parse(value) -> list[str]:
    """The constitution: a list of principles (non-empty text each), or one principle per line of a text."""
    if value is None or value == "" or value == []:
        return list(DEFAULT_CONSTITUTION)
    if isinstance(value, str):
        value = [line.strip(" -*\t") for line in value.splitlines()]
        value = [line for line in value if line]
    if not isinstance(value, list) or not value:
        raise Invalid("must be a list of principles (or a text with one principle per line)", field="constitution")
    if len(value) > MAX_PRINCIPLES:
        raise Invalid(f"has {len(value)} principles; at most {MAX_PRINCIPLES}", field="constitution")
    out = []
    for i, principle in enumerate(value):
        if not isinstance(principle, str) or not principle.strip():
            raise Invalid("must be a non-empty text", field=f"constitution[{i}]")
        if len(principle) > MAX_PRINCIPLE_CHARS or "\x00" in principle:
            raise Invalid(f"must be at most {MAX_PRINCIPLE_CHARS} characters of text", field=f"constitution[{i}]")
        out.append(principle.strip())
    return out


def principle_drawn(prompt_id: int, constitution: list[str], seed: int) -> int:
    """The principle a prompt's answer is critiqued against: drawn at random, the same for the same seed."""
    return random.Random(f"critique:{seed}:{prompt_id}").randrange(len(constitution))


def chain_rows(prompts: list[tuple[int, list]], constitution: list[str], *, seed: int):
    """Rows of the prompts file: each prompt with its principle and the two follow-ups (critique, then revise)."""
    for prompt_id, messages in prompts:
        index = principle_drawn(prompt_id, constitution, seed)
        principle = constitution[index]
        yield {"prompt_id": prompt_id, "prompt": messages, "principle": index,
               "followups": [CRITIQUE_REQUEST.format(principle=principle),
                             REVISION_REQUEST.format(principle=principle)]}


def chain_of(row: dict) -> tuple[str, str, str] | None:
    """(answer, critique, revision) of one generations row, or None when the conversation is incomplete."""
    turns = row.get("turns")
    if not isinstance(turns, list) or len(turns) != 3 or not all(isinstance(t, str) for t in turns):
        return None
    return turns[0], turns[1], turns[2]


def spot_check_sample(keys: list, share: float, *, seed: int) -> set:
    """Which chains raters check: ``share`` of them (at least one when share > 0), drawn with the round's seed."""
    if share <= 0 or not keys:
        return set()
    count = max(1, round(len(keys) * share))
    return set(random.Random(f"spot-check:{seed}").sample(sorted(keys), min(count, len(keys))))
