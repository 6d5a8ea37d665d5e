"""Every message to the broker leaves from here: runs, project jobs, merges and evaluations.

A service that starts work calls ``send(task, args, queue=...)`` inside its transaction; the message goes to
the broker once that transaction commits, so a worker never looks for a row that is not there yet, and a
rolled-back request sends nothing. Tasks are named, not imported: a service does not need the task module
(which imports the jobs, which import the services).
"""
from __future__ import annotations

import logging

from celery import current_app
from django.db import transaction

logger = logging.getLogger(__name__)

# The tasks a service may send (their names in training.tasks).
RUN_TRAIN = "training.tasks.run_train"
CHECKPOINT_MERGE = "training.tasks.checkpoint_merge_task"
CHECKPOINT_EVALUATE = "training.tasks.checkpoint_evaluate_task"
PROJECT_JOB = "training.tasks.project_job_task"
BATTLE_GENERATE = "training.tasks.battle_generate_task"
TASKS = (RUN_TRAIN, CHECKPOINT_MERGE, CHECKPOINT_EVALUATE, PROJECT_JOB, BATTLE_GENERATE)


def send(task: str, args: list, *, queue: str | None = None) -> None:
    """Send ``task(*args)`` to ``queue`` (default: its route) once the current transaction commits."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}")
    options = {"queue": queue} if queue else {}
    transaction.on_commit(lambda: current_app.send_task(task, args=args, **options))
