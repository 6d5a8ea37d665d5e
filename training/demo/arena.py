"""seed_demo's arena: "Demo: arena", whose leaderboard has ratings with intervals from the start.

Its recorded battles pit the demo prompts' own answers (``prompts.jsonl``: demo-llm-70b, demo-llm-7b, demo-llm-7b-sft
and human-written ones) two at a time, every pair of different sources on every prompt; the demo raters' votes are
simulated from the reference judgements (``reference.json``) with each rater's noise and position bias, from fixed
seeds, so every demo shows the same leaderboard. Nothing is generated: the step takes a second or two. New battles
started on the page are answered by the built-in models (``config.sources``).
"""
from __future__ import annotations

import itertools
import json
import random
from pathlib import Path

from django.db import transaction

from annotation.errors import Invalid
from annotation.importer import import_items
from annotation.models import Membership, Project
from annotation.services import member_add, project_create, project_update

from .. import arena, services
from ..models import Battle

ARENA_SLUG = "demo-arena"
ARENA_NAME = "Demo: arena"
LIVE_SOURCES = ("small", "tiny")  # the built-in models that answer new battles (those that exist)
# Each voter's noise around the reference score (a vote on two whole answers read once: noisier than the item
# raters of the other demo projects) and the share of close calls given to A.
VOTERS = {"alice": (1.2, 0.0), "bob": (1.8, 0.4)}
DEMO_DIR = Path(__file__).resolve().parent

GUIDELINES = """\
# Which answer would you rather receive?

Write a prompt (or press **Suggest a prompt**), read both answers, and vote: **A**, **B**, **tie** when they are
equally good, **both bad** when you would want neither. The models are named only after your vote.

Judge correctness first (facts, arithmetic, code), then whether the answer does what was asked, clearly and without
padding. A polite refusal of a harmful request is the right answer; refusing a harmless one is not.
"""


def _live_sources() -> list[dict]:
    available = []
    for name in LIVE_SOURCES:
        try:
            services.base_model_get(name=name)
        except Invalid:
            continue
        available.append({"base_model": name})
    return available if len(available) >= 2 else []


def _vote(rng: random.Random, voter: str, refs: list[dict]) -> str:
    noise, position_bias = VOTERS[voter]
    a, b = (ref["score"] + rng.gauss(0, noise) for ref in refs)
    if max(ref["score"] for ref in refs) <= 4 and rng.random() < 0.5:
        return "both_bad"
    if abs(a - b) < 1.0 and rng.random() < position_bias:
        return "A"  # a close call goes to whichever was shown first
    if abs(a - b) < 0.3:
        return "tie"
    return "A" if a > b else "B"


def recorded_battles() -> list[dict]:
    """Every recorded battle of the demo arena, in a fixed order: {external_id, messages, answers, voter, refs}."""
    reference = json.loads((DEMO_DIR / "reference.json").read_text(encoding="utf-8"))
    battles, n = [], 0
    for line in (DEMO_DIR / "prompts.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        answers = [(r.get("model") or "human", r["text"], ref) for r, ref in zip(row["responses"], reference[row["id"]])]
        for i, j in itertools.combinations(range(len(answers)), 2):
            if answers[i][0] == answers[j][0]:
                continue
            rng = random.Random(f"demo-arena:{row['id']}:{i}:{j}")
            pair = [answers[i], answers[j]]
            rng.shuffle(pair)  # which is A
            voter = tuple(VOTERS)[n % len(VOTERS)]
            battles.append({"external_id": f"arena-{row['id']}-{i}-{j}", "rng": rng, "voter": voter,
                            "messages": [{"role": "user", "content": row["prompt"]}],
                            "answers": [(name, text) for name, text, _ in pair], "refs": [ref for _, _, ref in pair],
                            "source_prompt": row["id"]})
            n += 1
    return battles


def step_arena(ctx) -> None:
    project = Project.objects.filter(slug=ARENA_SLUG).first()
    live = _live_sources()
    if project is None:
        project = project_create(name=ARENA_NAME, mode="arena", guidelines=GUIDELINES, slug=ARENA_SLUG,
                                 config={"sources": live, "sampling": "widest_interval"},
                                 created_by=ctx.users.get("admin"))
        with open(DEMO_DIR / "prompts.jsonl", "rb") as stream:  # suggestions for raters' own battles
            import_items(project=project, stream=stream, filename="prompts.jsonl", round_name="demo")
    elif not project.config.get("sources") and live:
        project_update(project=project, config={"sources": live})  # a built-in model arrived since
    ctx.projects[ARENA_SLUG] = project
    for username in VOTERS:
        if username in ctx.users and not Membership.objects.filter(project=project, user=ctx.users[username]).exists():
            member_add(project=project, username=username)
    if not ctx.options.get("annotations", True):
        ctx.say("arena: no recorded battles (--no-annotations)")
        return
    before = Battle.objects.filter(project=project).count()
    with transaction.atomic():  # one commit for them all
        for battle in recorded_battles():
            voter = ctx.users.get(battle["voter"])
            if voter is None:
                continue
            arena.battle_import(project=project, rater=voter, external_id=battle["external_id"],
                                messages=battle["messages"], answers=battle["answers"],
                                choice=_vote(battle["rng"], battle["voter"], battle["refs"]),
                                metadata={"recorded": "demo", "source_prompt": battle["source_prompt"]})
    made = Battle.objects.filter(project=project).count() - before
    board = arena.leaderboard(project=project)
    ctx.say(f"arena: {made} recorded battles voted" if made else "arena: recorded battles already there")
    top = ", ".join(f"{r['source']} {r['rating']:.0f} [{r['ci_low']:.0f}-{r['ci_high']:.0f}]"
                    for r in board["rows"] if r["rating"] is not None)
    ctx.summary.append(f"Arena leaderboard ({board['battles']} votes, 95% bootstrap intervals): {top}; /p/{ARENA_SLUG}/")


ARENA_STEPS = [step_arena]
