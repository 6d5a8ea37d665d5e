"""Celery tasks for training. Each takes ids, calls one job, and exits at once on a duplicate delivery.

Services never import this module: they name the task in ``training.outbox``, which records it beside their rows
and sends it once their transaction commits. Runs, merges and evaluations go to the `training` queue
(config/settings.py: one worker per GPU node, `celery -A config worker -Q training -c 1`); project jobs to the
queue their service picks. The two periodic tasks, the stale-run reaper and the outbox's re-sender, are sent by
Celery beat to the `default` queue: they never wait behind a long run, and they work while every training worker
is gone.
"""
from celery import shared_task

from . import active_learning, arena, chat_generation, distillation, jobs, judge, outbox, project_jobs, rounds, services
from .models import ProjectJob

PROJECT_JOB_WORK = {
    ProjectJob.Kind.JUDGE: judge.judge_execute,
    ProjectJob.Kind.ACTIVE_LEARNING: active_learning.active_learning_execute,
    ProjectJob.Kind.GENERATE: chat_generation.chat_generate_execute,
}


@shared_task(name=outbox.RUN_TRAIN, bind=True, acks_late=True, ignore_result=True)
def run_train(self, run_id: int):
    status = jobs.run_execute(run_id=run_id, worker=self.request.hostname)
    rounds.round_after_run(run_id=run_id)  # a generation round imports its items once its runs succeeded (idempotent)
    distillation.distillation_after_run(run_id=run_id)  # a distillation's next step: the student's run, or done
    return status


@shared_task(name=outbox.CHECKPOINT_MERGE, acks_late=True, ignore_result=True)
def checkpoint_merge_task(checkpoint_id: int):
    return jobs.checkpoint_merge_execute(checkpoint_id=checkpoint_id)


@shared_task(name=outbox.CHECKPOINT_EVALUATE, acks_late=True, ignore_result=True)
def checkpoint_evaluate_task(checkpoint_id: int, kind: str):
    return jobs.checkpoint_evaluate_execute(checkpoint_id=checkpoint_id, kind=kind)


@shared_task(name=outbox.PROJECT_JOB, acks_late=True, ignore_result=True)
def project_job_task(job_id: int):
    """The AI judge, active-learning scoring or a chat endpoint's answers; queued on `training` when a reward model
    scores, on `default` for a chat endpoint."""
    status = project_jobs.job_execute(job_id=job_id, work=PROJECT_JOB_WORK)
    rounds.round_after_job(job_id=job_id)  # a round or a distillation waiting on an endpoint's answers goes on
    distillation.distillation_after_job(job_id=job_id)
    return status


@shared_task(name=outbox.BATTLE_GENERATE, acks_late=True, ignore_result=True)
def battle_generate_task(battle_id: int, side: int):
    """One side of an arena battle: on `default` for a chat endpoint, on PS_ARENA_QUEUE (`training`) for a model."""
    return arena.battle_generate_execute(battle_id=battle_id, side=side)


@shared_task(name="training.reap_stale_runs", ignore_result=True)
def reap_stale_runs():
    return services.runs_reap_stale()


@shared_task(name=outbox.RESEND, ignore_result=True)
def outbox_resend():
    """Send again what the broker did not take when its transaction committed."""
    return outbox.resend()
