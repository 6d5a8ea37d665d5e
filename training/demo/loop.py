"""seed_demo's loop steps: a DPO run on the demo pairwise annotations, a generation round from its checkpoint and a
human evaluation of it (checkpoint vs the tiny base) with simulated answers, all on the built-in tiny model.

The engine runs here, synchronously, through the same job code a worker runs (``training.jobs.run_execute``); if a
worker happens to take a run first, the step waits for it. With ``--loop-on-worker`` (what ``./dev demo`` does, in
the background while the app already answers) the runs are left to the worker and the step only waits for them, so
the dashboard shows them queued, running and done. Each step looks before it writes, so running seed_demo again
changes nothing; the simulated answers are seeded, so every fresh demo gets the same win-rate.
"""
from __future__ import annotations

import random
import time
from concurrent.futures import ThreadPoolExecutor

from django.contrib.auth import get_user_model
from django.db import connection

from annotation.errors import Forbidden
from annotation.models import Response
from annotation.services import annotation_submit, queue_next, queue_shuffle_seed

from .. import jobs, rounds, services
from ..models import Checkpoint, Round, TrainingRun

DEMO_PROJECT = "demo-pairwise"
DPO_CONFIG = {"max_steps": 20, "batch_size": 4, "max_length": 192, "logging_steps": 1, "eval_fraction": 0.1}
SAMPLING = {"temperature": 0.9, "top_p": 0.95, "max_new_tokens": 40}
WAIT_S = 600
WORKER_WAIT_S = 3600  # the worker may have other runs queued before the demo's
EVAL_SEED = "preference-studio-demo:human-eval"

User = get_user_model()


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


def demo_checkpoint(ctx) -> Checkpoint | None:
    project = ctx.projects[DEMO_PROJECT]
    run = (TrainingRun.objects.filter(project=project, method=TrainingRun.Method.DPO, status=TrainingRun.Status.SUCCEEDED)
           .order_by("-finished_at").first())
    if run is None:
        run, _ = services.run_create(method="dpo", base_model=services.base_model_get(name=services.TINY),
                                  project=project, config=dict(DPO_CONFIG), created_by=ctx.users.get("admin"))
        ctx.say(f"loop: training DPO run {run.pk} on the tiny model ...")
        run = _execute(run, ctx.options.get("loop_on_worker", False))
        if run.status != TrainingRun.Status.SUCCEEDED:
            ctx.summary.append(f"The demo DPO run {run.pk} {run.status}: {run.error[:300]}")
            return None
        ctx.say(f"loop: DPO run {run.pk} {run.status} in {run.step} steps")
    else:
        ctx.say(f"loop: DPO run {run.pk} already trained")
    return run.checkpoints.exclude(kind=Checkpoint.Kind.MERGED).order_by("-step").first()


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


def step_loop(ctx):
    """A DPO run, then a generation round from its checkpoint and a human evaluation of it against the base."""
    if not ctx.options.get("annotations", True) or not ctx.options.get("loop", True):
        ctx.say("loop: skipped")
        return
    checkpoint = demo_checkpoint(ctx)
    if checkpoint is None:
        return
    project, admin = ctx.projects[DEMO_PROJECT], ctx.users.get("admin")
    generated = Round.objects.filter(project=project, kind=Round.Kind.GENERATION,
                                     runs__source_checkpoint=checkpoint).first()
    evaluation = Round.objects.filter(kind=Round.Kind.HUMAN_EVAL, checkpoint=checkpoint).first()
    pending = []
    if generated is None:
        generated = rounds.generation_round_launch(project=project, sources=[checkpoint], n=2, max_prompts=8,
                                                   **SAMPLING, created_by=admin)
        pending.append(generated)
    if evaluation is None:
        evaluation = rounds.human_eval_round_create(project=project, checkpoint=checkpoint, max_prompts=12,
                                                    **SAMPLING, created_by=admin)
        pending.append(evaluation)
    if pending:
        ctx.say(f"loop: generating {', '.join(r.name for r in pending)} ...")
        _finish_rounds(ctx, pending)
        generated.refresh_from_db(), evaluation.refresh_from_db()
    ctx.say(f"loop: generation round {generated.name} from checkpoint {checkpoint.pk}: {generated.items_created} items "
            f"in /p/{project.slug}/")
    if evaluation in pending and evaluation.status == Round.Status.READY:
        answered = _simulate_evaluation(ctx, evaluation)
        ctx.say(f"loop: human evaluation {evaluation.name}: {evaluation.items_created} pairs, {answered} simulated answers")
    result = rounds.human_eval_result(checkpoint=checkpoint)
    if result["n"]:
        ctx.summary.append(
            f"Checkpoint {checkpoint.pk} (DPO run {checkpoint.run_id}): human win-rate {result['win_rate']:.2f} "
            f"(95% CI {result['ci95'][0]:.2f}-{result['ci95'][1]:.2f}, n={result['n']}, ties count half) "
            f"against the tiny base; evaluation project /p/{evaluation.project.slug}/"
        )


def _simulated_choice(rng: random.Random, texts: list[str]) -> str:
    """A stand-in rater: prefers the response with more distinct words, with some noise and a few ties."""
    a, b = (len(set(t.split())) + rng.gauss(0, 2) for t in texts)
    if abs(a - b) < 0.5:
        return "tie"
    return "A" if a > b else "B"


def _simulate_evaluation(ctx, rnd: Round) -> int:
    queue_shuffle_seed(EVAL_SEED)  # the order each pair is shown in (the queue's shuffle) decides the close calls
    answered = 0
    for username in ("alice", "bob"):
        user = ctx.users.get(username)
        if user is None:
            continue
        rng = random.Random(f"human-eval:{username}")
        for _ in range(8):  # each simulated rater answers a few pairs and leaves the rest for people
            try:
                assignment = queue_next(rater=user, project=rnd.project)
            except Forbidden:
                break
            if assignment is None:
                break
            texts = dict(Response.objects.filter(pk__in=assignment.display_order).values_list("pk", "text"))
            choice = _simulated_choice(rng, [texts[rid] for rid in assignment.display_order])
            annotation_submit(rater=user, item_id=assignment.item_id, payload={"choice": choice},
                              idempotency_key=f"seed-demo-eval-{assignment.item_id}")
            answered += 1
    return answered


LOOP_STEPS = [step_loop]
