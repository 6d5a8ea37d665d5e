"""python manage.py seed_demo [--no-annotations]

Demo data for a fresh install: an admin and two raters, three projects (pairwise, ranking and
rating) filled from ``training/demo/prompts.jsonl``, a few gold items, and simulated annotations
by the two raters so the quality pages and exports have something to show.

Safe to run again: every step looks before it writes, so a second run changes nothing.

The work is a list of steps (``STEPS``), each a function of one ``SeedContext``. To extend the
demo, write another ``step_*`` function and append it to ``STEPS``; it can use the users and
projects the earlier steps put on the context and add lines to the summary.

``training/demo/reference.json`` holds a reference judgement of every demo response (a 1-7
score and the flags it deserves). It sets the gold answers and drives the simulated raters; it is
never shown to raters.
"""
from __future__ import annotations

import json
import math
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.db.models import Count, Q
from rest_framework.authtoken.models import Token

from annotation.errors import Forbidden, ImportFailed
from annotation.importer import import_items
from annotation.management.base import BoundaryCommand
from annotation.models import Annotation, Item, Membership, Project, Response
from annotation.services import (
    annotation_submit,
    assignment_skip,
    item_set_gold,
    member_add,
    project_create,
    queue_next,
    queue_shuffle_seed,
)
from training.demo.arena import ARENA_STEPS
from training.demo.loop import LOOP_STEPS

User = get_user_model()

DEMO_DIR = Path(__file__).resolve().parents[2] / "demo"  # training/demo
PROMPTS_FILE = DEMO_DIR / "prompts.jsonl"
REFERENCE_FILE = DEMO_DIR / "reference.json"
DEMO_ROUND = "demo"
DEFAULT_PASSWORD = "demo-password-1"

ADMIN = "admin"
RATERS = ("alice", "bob")

PAIRWISE_GUIDELINES = """\
# Which response is more helpful?

You will see a user's request and two responses, **A** and **B**. Pick the one you would rather
receive if you had asked the question yourself.

**Helpfulness** — does it do what was asked? Prefer responses that are:
- **correct**: check facts, arithmetic and code; a confident wrong answer is worse than a short right one;
- **complete** but not padded: length is not a virtue in itself;
- **clear**: well organised, with code in code blocks and steps in order.

**Safety** — a response that helps with something harmful (getting into someone else's account,
forging documents) loses, however well written. A polite refusal that points to a legitimate
alternative is the right answer there. Refusing a harmless request (basic safety information,
for example) is *not* safe, just unhelpful.

**Strength**: *negligible* (near coin-flip), *slight*, *better*, *significant* (one is clearly
unacceptable or much worse). Use **tie** when they are equally good and **both bad** when you
would not want either.

Rate each criterion separately when they disagree: a response can be more helpful but less safe.
Some items are checked against known answers.
"""

RANKING_GUIDELINES = """\
# Rank the responses, best first

You will see a request and up to three responses. Drag them into order from **best** (top) to
**worst** (bottom).

1. Wrong facts, broken code or incorrect maths rank below anything correct.
2. Among correct responses, prefer the one that answers the actual question most directly and clearly.
3. Harmful compliance ranks last; a good refusal with a useful alternative can rank first.
4. If two responses are genuinely equal, put them in the **same** group (a tie). Use ties sparingly.

Mark an item **not rankable** only if the request itself is unreadable or every response is empty.
"""

RATING_GUIDELINES = """\
# Rate one response

Read the request, then rate the response from **1** (terrible) to **7** (excellent):

| Score | Meaning |
|---|---|
| 7 | Correct, complete, clear; nothing you would change |
| 5-6 | Good, with minor gaps or some unnecessary length |
| 4 | Acceptable: answers the question but with noticeable problems |
| 2-3 | Mostly unhelpful, partly wrong, or ignores part of the instructions |
| 1 | Wrong, harmful, or off-topic |

Tick every flag that applies (**hallucination** for invented or wrong facts, **fails instruction**
when it ignores a constraint such as "two sentences", **refusal** when it declines a reasonable
request, **harmful** when it helps cause harm). Add a comment when your score needs explaining.
"""


@dataclass(frozen=True)
class DemoProject:
    slug: str
    name: str
    mode: str
    config: dict
    guidelines: str
    annotated_share: float  # share of non-gold items the simulated raters annotate


DEMO_PROJECTS = (
    DemoProject("demo-pairwise", "Demo: helpfulness (pairwise)", "pairwise",
                {"criteria": ["helpfulness", "safety"], "strength": True, "overlap": 2, "gold_rate": 0.1},
                PAIRWISE_GUIDELINES, 0.6),
    DemoProject("demo-ranking", "Demo: ranking", "ranking", {"k": 3, "overlap": 2}, RANKING_GUIDELINES, 0.5),
    DemoProject("demo-rating", "Demo: rating", "rating", {"overlap": 1}, RATING_GUIDELINES, 0.5),
)

GOLD_ITEMS = 6  # pairwise items turned into gold questions
DEMO_SEED = "preference-studio-demo"


@dataclass(frozen=True)
class RaterProfile:
    noise: float  # spread of the rater's judgement around the reference score
    position_bias: float  # on a close call, how often the rater just picks the response shown first


RATER_PROFILES = {"alice": RaterProfile(noise=0.5, position_bias=0.0),
                  "bob": RaterProfile(noise=0.9, position_bias=0.5)}


@dataclass
class SeedContext:
    command: BaseCommand
    options: dict
    password: str
    users: dict[str, object] = field(default_factory=dict)
    projects: dict[str, Project] = field(default_factory=dict)
    token: str = ""
    summary: list[str] = field(default_factory=list)
    _reference: dict | None = None

    def say(self, message: str):
        if self.options.get("verbosity", 1) >= 1:
            self.command.stdout.write(message)

    @property
    def reference(self) -> dict[str, list[dict]]:
        if self._reference is None:
            self._reference = json.loads(REFERENCE_FILE.read_text(encoding="utf-8"))
        return self._reference

    def scores_by_response(self, project: Project) -> dict[int, dict]:
        """Reference judgement per response id of the demo prompts in ``project``."""
        out: dict[int, dict] = {}
        rows = Response.objects.filter(prompt__project=project, prompt__external_id__in=self.reference)
        by_prompt: dict[str, list[int]] = {}
        for rid, ext in rows.order_by("id").values_list("id", "prompt__external_id"):
            by_prompt.setdefault(ext, []).append(rid)
        for ext, rids in by_prompt.items():
            refs = self.reference[ext]
            if len(refs) == len(rids):
                out.update(zip(rids, refs))
        return out


# --- steps ---------------------------------------------------------------------------------


def step_users(ctx: SeedContext):
    created, updated = [], []
    for username, staff in [(ADMIN, True)] + [(name, False) for name in RATERS]:
        user, was_created = User.objects.get_or_create(
            username=username, defaults={"is_staff": staff, "is_superuser": staff,
                                         "email": f"{username}@example.com"})
        changed = was_created
        if staff and not (user.is_staff and user.is_superuser):
            user.is_staff = user.is_superuser = True
            changed = True
        if not user.is_active:
            user.is_active, changed = True, True
        if not user.check_password(ctx.password):
            user.set_password(ctx.password)
            changed = True
        if changed:
            user.save()
            (created if was_created else updated).append(username)
        ctx.users[username] = user
    token, _ = Token.objects.get_or_create(user=ctx.users[ADMIN])
    ctx.token = token.key
    ctx.say(f"users: {_done(created, updated)}")


def step_projects(ctx: SeedContext):
    created = []
    for spec in DEMO_PROJECTS:
        project = Project.objects.filter(slug=spec.slug).first()
        if project is None:
            project = project_create(name=spec.name, mode=spec.mode, guidelines=spec.guidelines,
                                     config=spec.config, slug=spec.slug, created_by=ctx.users[ADMIN])
            created.append(spec.slug)
        elif project.mode != spec.mode:
            raise CommandError(f"Project '{spec.slug}' exists with mode {project.mode}, not {spec.mode}; "
                               "rename or delete it and run seed_demo again.")
        ctx.projects[spec.slug] = project
    ctx.say(f"projects: {_done(created)}")


def step_import(ctx: SeedContext):
    for spec in DEMO_PROJECTS:
        project = ctx.projects[spec.slug]
        try:
            with open(PROMPTS_FILE, "rb") as stream:
                result = import_items(project=project, stream=stream, filename=PROMPTS_FILE.name,
                                      round_name=DEMO_ROUND)
        except ImportFailed as exc:
            raise CommandError("The demo prompts did not import:\n" + "\n".join(str(e) for e in exc.errors))
        if result.prompts_created:
            ctx.say(f"import into {spec.slug}: {result.prompts_created} prompts, "
                    f"{result.responses_created} responses, {result.items_created} items")
        else:
            ctx.say(f"import into {spec.slug}: already there ({result.skipped} prompts)")


def step_members(ctx: SeedContext):
    added = []
    for project in ctx.projects.values():
        for username in RATERS:
            if not Membership.objects.filter(project=project, user=ctx.users[username]).exists():
                member_add(project=project, username=username)
                added.append(f"{username}@{project.slug}")
    ctx.say(f"members: {_done(added)}")


def _gold_candidates(ctx: SeedContext, project: Project) -> list[tuple[Item, dict]]:
    """Clear-cut pairwise items (reference scores 3+ apart), with the answer in canonical order."""
    scores = ctx.scores_by_response(project)
    candidates = []
    items = Item.objects.filter(project=project, round=DEMO_ROUND).prefetch_related("item_responses")
    for item in items.order_by("id"):
        rids = [ir.response_id for ir in item.item_responses.all()]
        if len(rids) != 2 or not all(r in scores for r in rids):
            continue
        a, b = (scores[r]["score"] for r in rids)
        if abs(a - b) >= 3:
            answer = {"choice": "A" if a > b else "B", "strength": "significant" if abs(a - b) >= 4 else "better"}
            candidates.append((item, answer))
    return candidates


def step_gold(ctx: SeedContext):
    project = ctx.projects["demo-pairwise"]
    if Item.objects.filter(project=project, is_gold=True).exists():
        ctx.say("gold: already set")
        return
    candidates = _gold_candidates(ctx, project)
    # spread the gold items over the queue, one per prompt
    picked, prompts = [], set()
    stride = max(len(candidates) // GOLD_ITEMS, 1)
    for item, answer in candidates[::stride] + candidates:
        if len(picked) == GOLD_ITEMS:
            break
        if item.prompt_id not in prompts:
            prompts.add(item.prompt_id)
            picked.append((item, answer))
    with transaction.atomic():
        for item, answer in picked:
            item_set_gold(item=item, is_gold=True, payload=answer)
    ctx.say(f"gold: marked {len(picked)} pairwise items")


def step_annotations(ctx: SeedContext):
    if not ctx.options.get("annotations", True):
        ctx.say("annotations: skipped (--no-annotations)")
        return
    for spec in DEMO_PROJECTS:
        project = ctx.projects[spec.slug]
        made = _simulate_raters(ctx, project, spec.annotated_share)
        ctx.say(f"annotations in {spec.slug}: {_done([f'{n} by {u}' for u, n in made.items() if n])}")


STEPS: list[Callable[[SeedContext], None]] = [
    step_users,
    step_projects,
    step_import,
    step_members,
    step_gold,
    step_annotations,
    *ARENA_STEPS,  # an arena with recorded battles and simulated votes: a leaderboard with intervals
    *LOOP_STEPS,  # a planted preference, a DPO run on it, a generated round and a human evaluation (small model)
]


# --- simulated raters ----------------------------------------------------------------------


def _simulate_raters(ctx: SeedContext, project: Project, share: float) -> dict[str, int]:
    """Raters take items from the real queue, in turn, until each has annotated their share."""
    scores = ctx.scores_by_response(project)
    # the demo's own items: rounds the loop generates later join the queue and must not grow the share on a rerun
    n_items = Item.objects.filter(project=project, is_gold=False, round=DEMO_ROUND).count()
    per_rater = math.ceil(share * n_items * min(project.overlap, len(RATERS)) / len(RATERS))
    remaining, made, rngs = {}, {}, {}
    for username in RATERS:
        user = ctx.users[username]
        done = Annotation.objects.filter(item__project=project, rater=user, item__is_gold=False,
                                         item__round=DEMO_ROUND).count()
        remaining[username], made[username] = max(per_rater - done, 0), 0
        rngs[username] = random.Random(f"{project.slug}:{username}")
    while any(remaining.values()):
        for username in RATERS:
            if not remaining[username]:
                continue
            user, rng = ctx.users[username], rngs[username]
            try:
                assignment = queue_next(rater=user, project=project)
            except Forbidden as exc:  # paused by the gold check
                ctx.summary.append(f"{username} was paused on {project.slug}: {exc.message}")
                assignment = None
            if assignment is None:
                remaining[username] = 0
                continue
            order = assignment.display_order
            if not all(rid in scores for rid in order):  # not a demo item: leave it for a person
                assignment_skip(rater=user, item_id=assignment.item_id)
                continue
            refs = [scores[rid] for rid in order]
            payload = JUDGES[project.mode](rng, RATER_PROFILES[username], order, refs, project.config)
            annotation_submit(rater=user, item_id=assignment.item_id, payload=payload,
                              idempotency_key=f"seed-demo-{assignment.item_id}",
                              time_spent_ms=_time_spent(rng, assignment.item_id))
            made[username] += 1
            if not assignment.is_gold:
                remaining[username] -= 1
    return made


def _time_spent(rng: random.Random, item_id: int) -> int:
    chars = sum(len(t) for t in Response.objects.filter(items__id=item_id).values_list("text", flat=True))
    seconds = (6 + chars / 40) * rng.lognormvariate(0, 0.35)  # reading at ~40 characters a second
    return int(min(seconds, 600) * 1000)


def _perceived(rng: random.Random, profile: RaterProfile, ref: dict) -> float:
    return ref["score"] + rng.gauss(0, profile.noise)


def _strength(diff: float) -> str:
    return "negligible" if diff < 0.9 else "slight" if diff < 1.8 else "better" if diff < 3 else "significant"


def judge_pairwise(rng, profile, order, refs, config) -> dict:
    a, b = (_perceived(rng, profile, r) for r in refs)
    diff = a - b
    harmful = ["harmful" in r["flags"] for r in refs]
    safety = "tie" if harmful[0] == harmful[1] else ("B" if harmful[0] else "A")
    if max(r["score"] for r in refs) <= 4 and rng.random() < 0.5:
        return {"choice": "both_bad", "criteria": {"helpfulness": "tie", "safety": safety}}
    if abs(diff) < 1.5 and rng.random() < profile.position_bias:
        choice = "A"  # a close call goes to whichever was shown first
    elif abs(diff) < 0.35:
        return {"choice": "tie", "criteria": {"helpfulness": "tie", "safety": safety}}
    else:
        choice = "A" if diff > 0 else "B"
    payload = {"choice": choice, "strength": _strength(abs(diff)) if config["strength"] else None,
               "criteria": {"helpfulness": choice, "safety": safety}}
    loser = refs[1] if choice == "A" else refs[0]
    if "hallucination" in loser["flags"] and rng.random() < 0.3:
        payload["comment"] = f"{'B' if choice == 'A' else 'A'} gets the facts wrong."
    elif "harmful" in loser["flags"]:
        payload["comment"] = f"{'B' if choice == 'A' else 'A'} helps with something it should decline."
    if payload["strength"] is None:
        del payload["strength"]
    return payload


def judge_ranking(rng, profile, order, refs, config) -> dict:
    seen = sorted(((_perceived(rng, profile, r), rid) for rid, r in zip(order, refs)), reverse=True)
    groups: list[list[int]] = []
    last = None
    for value, rid in seen:
        if groups and config["allow_ties"] and last - value < 0.25:
            groups[-1].append(rid)
        else:
            groups.append([rid])
        last = value
    return {"order": groups}


FLAG_COMMENTS = {
    "hallucination": "Contains a factual error.",
    "fails_instruction": "Doesn't do what was asked.",
    "harmful": "Should have declined.",
    "refusal": "Refuses a reasonable request.",
}


def judge_rating(rng, profile, order, refs, config) -> dict:
    ref = refs[0]
    overall = min(max(round(_perceived(rng, profile, ref) * 0.8 + ref["score"] * 0.2), 1), config["scale"])
    flags = [f for f in ref["flags"] if f in config["flags"] and rng.random() < 0.85]
    payload = {"overall": overall, "flags": flags}
    if flags and rng.random() < 0.5:
        payload["comment"] = FLAG_COMMENTS.get(flags[0], "")
    return payload


JUDGES = {"pairwise": judge_pairwise, "ranking": judge_ranking, "rating": judge_rating}


# --- the command ---------------------------------------------------------------------------


def _done(created: list[str], updated: list[str] = ()) -> str:
    parts = []
    if created:
        parts.append("created " + ", ".join(created))
    if updated:
        parts.append("updated " + ", ".join(updated))
    return "; ".join(parts) or "nothing to do"


class Command(BoundaryCommand):
    help = ("Create demo users and projects with prompts, gold items and simulated annotations. "
            "Running it again changes nothing.")

    def add_arguments(self, parser):
        parser.add_argument("--with-annotations", dest="annotations", action="store_true", default=True,
                            help="Submit simulated annotations by the demo raters (the default).")
        parser.add_argument("--no-annotations", dest="annotations", action="store_false",
                            help="Create users, projects and items only.")
        parser.add_argument("--no-loop", dest="loop", action="store_false", default=True,
                            help="Skip the training loop (planted preference, DPO run, generated round, human evaluation).")
        parser.add_argument("--loop-only", action="store_true",
                            help="Only the training loop (the rest must be there: run seed_demo --no-loop first).")
        parser.add_argument("--loop-on-worker", action="store_true",
                            help="Leave the loop's runs to a Celery worker and wait for them (./dev demo does this "
                                 "in the background, so the dashboard shows the loop progressing).")

    def handle(self, *args, **options):
        # The queue shows each rater the responses in a random order, and the simulated raters' close calls depend
        # on it: a fixed seed gives every fresh demo the same annotations, the same run and the same figures.
        queue_shuffle_seed(DEMO_SEED)
        password = os.environ.get("PS_DEMO_PASSWORD") or DEFAULT_PASSWORD
        ctx = SeedContext(command=self, options=options, password=password)
        steps = STEPS
        if options.get("loop_only"):  # the loop needs the users and projects in its context: read, not written
            steps = [step_users, step_projects, *LOOP_STEPS]
        for step in steps:
            step(ctx)
        self.report(ctx)

    def report(self, ctx: SeedContext):
        w, ok = self.stdout.write, self.style.SUCCESS
        w("")
        w(ok("Demo data is ready."))
        w("")
        w("Log in with (username / password):")
        for username, user in ctx.users.items():
            w(f"  {username} / {ctx.password}    ({'admin' if user.is_staff else 'rater'})")
        w("")
        w(f"API token for {ADMIN}: {ctx.token}")
        w(f'  curl -H "Authorization: Token {ctx.token}" http://127.0.0.1:{os.environ.get("PORT", "8000")}/api/v1/projects/')
        w("")
        w("Projects:")
        for slug, project in ctx.projects.items():
            counts = Item.objects.filter(project=project).aggregate(
                items=Count("id"), gold=Count("id", filter=Q(is_gold=True)),
                complete=Count("id", filter=Q(is_complete=True)))
            annotations = Annotation.objects.filter(item__project=project, source=Annotation.Source.HUMAN).count()
            w(f"  {project.name}  /p/{slug}/  ({project.mode}): {counts['items']} items, "
              f"{counts['gold']} gold, {counts['complete']} complete, {annotations} annotations")
        for line in ctx.summary:
            w(self.style.WARNING(line))
