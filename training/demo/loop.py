"""seed_demo's loop steps, on the built-in ``small`` model: a round of the base model's own answers judged by the
simulated raters under one planted preference (the answer that says more: more different words), a DPO run on
those judgements, then a generation round from its checkpoint and a human evaluation of it against the base, whose
simulated answers follow the same rule.

The preference is planted in "Demo: say more (pairwise)", whose prompts are questions about Python's standard
library (``loop_prompts.jsonl``: what ``small`` was trained to answer) and whose guidelines state the rule. The
simulated raters of both the training pairs and the evaluation read the two texts and apply ``says`` with a
little noise, so the checkpoint is judged by what it learned, never by which model wrote it. (DPO learns this
direction steadily; the other, "fewer words", teaches a model to answer in one or two words, which says nothing.)

The engine runs here, synchronously, through the same job code a worker runs (``training.jobs.run_execute``); if a
worker happens to take a run first, the step waits for it. With ``--loop-on-worker`` (what ``./dev demo`` does, in
the background while the app already answers) the runs are left to the worker and the step only waits for them, so
the dashboard shows them queued, running and done. Each step looks before it writes, so running seed_demo again
changes nothing; generation, training and the simulated answers are seeded, so every fresh demo gets the same
win-rate.
"""
from __future__ import annotations

import json
import random
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from django.contrib.auth import get_user_model
from django.db import connection, transaction

from annotation.errors import Forbidden
from annotation.models import Annotation, Item, Membership, Project, Prompt, Response
from annotation.services import annotation_submit, member_add, project_create, queue_next, queue_shuffle_seed

from .. import jobs, rounds, services
from ..models import Checkpoint, Round, TrainingRun

DEMO_DIR = Path(__file__).resolve().parent
LOOP_PROJECT = "demo-loop"
LOOP_NAME = "Demo: say more (pairwise)"
LOOP_PROMPTS = DEMO_DIR / "loop_prompts.jsonl"
LOOP_CONFIG = {"overlap": 1, "allow_tie": True, "strength": False}
LOOP_GUIDELINES = """\
# Which answer says more?

You will see a question about Python's standard library and two answers, **A** and **B**. Pick the one that
**says more**: the one with more different words (a word said twice counts once). Facts do not count here, only
how much each answer has to say.

Use **tie** when the two say about as much as each other.
"""
BASE_MODEL = services.SMALL
SAMPLING = {"temperature": 0.7, "top_p": 0.95, "max_new_tokens": 64}  # small's readable range (its card: 0.7)
BASE_ANSWERS = 4  # per prompt in the round the preference is planted in: all 6 pairs of them become items
DPO_CONFIG = {"max_steps": 60, "batch_size": 8, "max_length": 192, "learning_rate": 2e-3, "dpo": {"beta": 0.1},
              "logging_steps": 1, "eval_fraction": 0.1}
EVAL_PROMPTS = 48  # pairs in the human evaluation (checkpoint vs base, one answer each per prompt): every question
EVAL_ANSWERS = 20  # each simulated rater answers this many of them and leaves the rest for people
WAIT_S = 600
WORKER_WAIT_S = 3600  # the worker may have other runs queued before the demo's
EVAL_SEED = "preference-studio-demo:human-eval"
PLANT_SEED = "preference-studio-demo:say-more"
RATERS = ("alice", "bob")

# The planted preference: the answer with more different words wins.
RATER_NOISE = 1.5  # words: the simulated raters count roughly
TIE_WORDS = 1.0  # answers this close (as perceived) are a tie

User = get_user_model()


def says(text: str) -> int:
    """The planted preference, read from the text alone: how much an answer says, in different words (a word
    repeated counts once, whatever its case)."""
    return len(set(text.lower().split()))


def simulated_choice(rng: random.Random, texts: list[str]) -> str:
    """A stand-in rater of "say more": "A", "B" or "tie" for two texts, by ``says`` with some noise."""
    a, b = (says(t) + rng.gauss(0, RATER_NOISE) for t in texts)
    if abs(a - b) < TIE_WORDS:
        return "tie"
    return "A" if a > b else "B"


def _execute(run: TrainingRun, on_worker: bool = False) -> TrainingRun:
    """Run a queued run here (or leave it to the worker); wait until it is finished, whoever runs it."""
    if not on_worker:
        jobs.run_execute(run_id=run.pk, worker="seed_demo")
    deadline = time.monotonic() + (WORKER_WAIT_S if on_worker else WAIT_S)
    run.refresh_from_db()
    while run.status in (TrainingRun.Status.QUEUED, TrainingRun.Status.RUNNING) and time.monotonic() < deadline:
        time.sleep(0.5)
        run.refresh_from_db()
    rounds.round_after_run(run_id=run.pk)
    return run


def loop_project(ctx) -> Project:
    """The project the preference is planted in: its guidelines, its raters and the demo's questions for small."""
    admin = ctx.users.get("admin")
    project = Project.objects.filter(slug=LOOP_PROJECT).first()
    if project is None:
        project = project_create(name=LOOP_NAME, mode="pairwise", guidelines=LOOP_GUIDELINES, config=dict(LOOP_CONFIG),
                                 slug=LOOP_PROJECT, created_by=admin)
    for username in RATERS:
        if username in ctx.users and not Membership.objects.filter(project=project, user=ctx.users[username]).exists():
            member_add(project=project, username=username)
    if not Prompt.objects.filter(project=project).exists():
        # questions alone: the answers come from the model, in the first round
        rows = [json.loads(line) for line in LOOP_PROMPTS.read_text(encoding="utf-8").splitlines()]
        with transaction.atomic():
            Prompt.objects.bulk_create(
                Prompt(project=project, external_id=row["id"], messages=[{"role": "user", "content": row["prompt"]}],
                       metadata={"source": "demo"}, round="demo") for row in rows)
    ctx.projects[LOOP_PROJECT] = project
    return project


def _finish_rounds(ctx, pending: list[Round]) -> list[Round]:
    """Run the rounds' generate runs, two at a time (one engine per core), then import them."""
    def execute(run):
        try:
            return _execute(run, ctx.options.get("loop_on_worker", False))
        finally:
            connection.close()  # this thread's own connection

    runs = [run for rnd in pending for run in rnd.runs.filter(status=TrainingRun.Status.QUEUED).order_by("id")]
    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(execute, runs))
    for rnd in pending:
        rounds.round_advance(round_id=rnd.pk)
        rnd.refresh_from_db()
        if rnd.status != Round.Status.READY:
            ctx.summary.append(f"The demo {rnd.kind} round {rnd.name} is {rnd.status}: {rnd.error[:300]}")
    return pending


def plant_preference(ctx, project: Project) -> bool:
    """The base model's own answers, four per question, every pair judged by the simulated raters under the
    project's rule. True once the judgements are there."""
    base = services.base_model_get(name=BASE_MODEL)
    planted = (Round.objects.filter(project=project, kind=Round.Kind.GENERATION, runs__base_model=base,
                                    runs__source_checkpoint__isnull=True).order_by("id").first())
    if planted is None:
        planted = rounds.generation_round_launch(project=project, sources=[base], n=BASE_ANSWERS, **SAMPLING,
                                                 created_by=ctx.users.get("admin"))
        ctx.say(f"loop: {BASE_MODEL} answers the questions of {project.slug} ({planted.name}) ...")
        _finish_rounds(ctx, [planted])
    if planted.status != Round.Status.READY:
        return False
    if not Annotation.objects.filter(item__project=project, item__round=planted.name).exists():
        answered = _simulate_answers(ctx, planted, per_rater=None, seed=PLANT_SEED)
        ctx.say(f"loop: {answered} pairs of {BASE_MODEL}'s answers judged by the simulated raters (say more)")
    return True


def demo_checkpoint(ctx, project: Project) -> Checkpoint | None:
    run = (TrainingRun.objects.filter(project=project, method=TrainingRun.Method.DPO, status=TrainingRun.Status.SUCCEEDED)
           .order_by("-finished_at").first())
    if run is None:
        if not plant_preference(ctx, project):
            return None
        run, _ = services.run_create(method="dpo", base_model=services.base_model_get(name=BASE_MODEL),
                                     project=project, config=dict(DPO_CONFIG), created_by=ctx.users.get("admin"))
        ctx.say(f"loop: training DPO run {run.pk} on the {BASE_MODEL} model ...")
        run = _execute(run, ctx.options.get("loop_on_worker", False))
        if run.status != TrainingRun.Status.SUCCEEDED:
            ctx.summary.append(f"The demo DPO run {run.pk} {run.status}: {run.error[:300]}")
            return None
        ctx.say(f"loop: DPO run {run.pk} {run.status} in {run.step} steps")
    else:
        ctx.say(f"loop: DPO run {run.pk} already trained")
    return run.checkpoints.exclude(kind=Checkpoint.Kind.MERGED).order_by("-step").first()


def step_loop(ctx):
    """A planted preference and a DPO run on it, then a generation round from its checkpoint and a human evaluation
    of it against the base."""
    if not ctx.options.get("annotations", True) or not ctx.options.get("loop", True):
        ctx.say("loop: skipped")
        return
    project = loop_project(ctx)
    checkpoint = demo_checkpoint(ctx, project)
    if checkpoint is None:
        return
    admin = ctx.users.get("admin")
    generated = Round.objects.filter(project=project, kind=Round.Kind.GENERATION,
                                     runs__source_checkpoint=checkpoint).first()
    evaluation = Round.objects.filter(kind=Round.Kind.HUMAN_EVAL, checkpoint=checkpoint).first()
    pending = []
    if evaluation is None:
        evaluation = rounds.human_eval_round_create(project=project, checkpoint=checkpoint, max_prompts=EVAL_PROMPTS,
                                                    **SAMPLING, created_by=admin)
        pending.append(evaluation)
    if generated is None:
        generated = rounds.generation_round_launch(project=project, sources=[checkpoint], n=2, max_prompts=8,
                                                   **SAMPLING, created_by=admin)
        pending.append(generated)
    if pending:
        ctx.say(f"loop: generating {', '.join(r.name for r in pending)} ...")
        _finish_rounds(ctx, pending)
        generated.refresh_from_db(), evaluation.refresh_from_db()
    ctx.say(f"loop: generation round {generated.name} from checkpoint {checkpoint.pk}: {generated.items_created} items "
            f"in /p/{project.slug}/")
    if evaluation in pending and evaluation.status == Round.Status.READY:
        answered = _simulate_answers(ctx, evaluation, per_rater=EVAL_ANSWERS, seed=EVAL_SEED)
        ctx.say(f"loop: human evaluation {evaluation.name}: {evaluation.items_created} pairs, {answered} simulated answers")
    result = rounds.human_eval_result(checkpoint=checkpoint)
    if result["n"]:
        ctx.summary.append(
            f"Checkpoint {checkpoint.pk} (DPO run {checkpoint.run_id}): human win-rate {result['win_rate']:.2f} "
            f"(95% CI {result['ci95'][0]:.2f}-{result['ci95'][1]:.2f}, n={result['n']}, ties count half) "
            f"against the {BASE_MODEL} base; evaluation project /p/{evaluation.project.slug}/"
        )


def _simulate_answers(ctx, rnd: Round, *, per_rater: int | None, seed: str) -> int:
    """The demo raters take the round's pairs from the real queue, in turn, and answer each by ``simulated_choice``
    (``per_rater`` pairs each, or until the queue is empty)."""
    queue_shuffle_seed(seed)  # the order each pair is shown in (the queue's shuffle) decides the close calls
    users = [ctx.users[u] for u in RATERS if u in ctx.users]
    rngs = {user.pk: random.Random(f"{seed}:{user.username}") for user in users}
    left = {user.pk: per_rater for user in users}
    answered = 0
    while users:
        for user in list(users):
            try:
                assignment = queue_next(rater=user, project=rnd.project)
            except Forbidden:
                assignment = None
            if assignment is None or Item.objects.get(pk=assignment.item_id).round != rnd.name:
                users.remove(user)  # done, or only other work left: that is for people
                continue
            texts = dict(Response.objects.filter(pk__in=assignment.display_order).values_list("pk", "text"))
            choice = simulated_choice(rngs[user.pk], [texts[rid] for rid in assignment.display_order])
            annotation_submit(rater=user, item_id=assignment.item_id, payload={"choice": choice},
                              idempotency_key=f"seed-demo-{rnd.name}-{assignment.item_id}")
            answered += 1
            if left[user.pk] is not None:
                left[user.pk] -= 1
                if not left[user.pk]:
                    users.remove(user)
    return answered


LOOP_STEPS = [step_loop]
