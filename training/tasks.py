"""Celery tasks for training. Each takes ids, calls one job, and exits at once on a duplicate delivery.

`training.tasks.*` is routed to the `training` queue (config/settings.py): run one worker per GPU node with
`celery -A config worker -Q training -c 1`. The stale-run reaper is named outside that pattern so it runs on
the `default` queue and never waits behind a long run.
"""
from celery import shared_task

from . import jobs, services


@shared_task(bind=True, acks_late=True, ignore_result=True)
def run_train(self, run_id: int):
    return jobs.run_execute(run_id=run_id, worker=self.request.hostname)


@shared_task(acks_late=True, ignore_result=True)
def checkpoint_merge_task(checkpoint_id: int):
    return jobs.checkpoint_merge_execute(checkpoint_id=checkpoint_id)


@shared_task(acks_late=True, ignore_result=True)
def checkpoint_evaluate_task(checkpoint_id: int, kind: str):
    return jobs.checkpoint_evaluate_execute(checkpoint_id=checkpoint_id, kind=kind)


@shared_task(name="training.reap_stale_runs", ignore_result=True)
def reap_stale_runs():
    return services.runs_reap_stale()
