"""Every message to the broker leaves from here (a transactional outbox): runs, project jobs, merges, evaluations.

A service that starts work calls ``send(task, args, queue=...)`` inside its transaction. That writes an
``OutboxMessage`` row beside the run (or job, or checkpoint request) it starts, so both commit or neither does;
once the transaction commits the message goes to the broker and is marked sent. When the broker is away the
commit still stands and the caller gets its answer (the run stays ``queued``); ``resend()``, run every
``PS_OUTBOX_RESEND_SECONDS`` by Celery beat on the default queue, sends what is still unsent once the broker is
back. A message can thus reach a worker twice (sent, then the "sent" mark lost); every task claims its row
first, so the second delivery does nothing.

Tasks are named here, not imported: a service does not need the task module (which imports the jobs, which
import the services).
"""
from __future__ import annotations

import logging
from datetime import timedelta

from celery import current_app
from django.conf import settings
from django.db import DatabaseError, transaction
from django.db.models import F
from django.utils import timezone

from .models import OutboxMessage

logger = logging.getLogger(__name__)

# The tasks a service may send (their names in training.tasks), and the periodic ones beat sends.
RUN_TRAIN = "training.tasks.run_train"
CHECKPOINT_MERGE = "training.tasks.checkpoint_merge_task"
CHECKPOINT_EVALUATE = "training.tasks.checkpoint_evaluate_task"
PROJECT_JOB = "training.tasks.project_job_task"
BATTLE_GENERATE = "training.tasks.battle_generate_task"
TASKS = (RUN_TRAIN, CHECKPOINT_MERGE, CHECKPOINT_EVALUATE, PROJECT_JOB, BATTLE_GENERATE)
RESEND = "training.outbox_resend"

# On commit, a broker that does not answer at once is left to the periodic sender: a request never waits long.
PUBLISH_RETRY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2}
RESEND_BATCH = 500
KEEP_SENT = timedelta(days=7)


def send(task: str, args: list, *, queue: str | None = None) -> OutboxMessage:
    """Record ``task(*args)`` for ``queue`` (default: its route) and send it once the current transaction commits."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}")
    message = OutboxMessage.objects.create(task=task, args=list(args), queue=queue or "")
    transaction.on_commit(lambda: publish(message))
    return message


def publish(message: OutboxMessage) -> bool:
    """Hand one message to the broker and mark it sent; False (and the message left to send) when the broker is
    away. Never raises: it runs after a commit, where an error would turn a done request into a 500."""
    options = {"queue": message.queue} if message.queue else {}
    try:
        current_app.send_task(message.task, args=message.args, task_id=f"outbox-{message.pk}",
                              retry=True, retry_policy=PUBLISH_RETRY, **options)
    except Exception as exc:  # connection refused, timeouts, a full broker: all mean "not sent yet"
        logger.warning("outbox %s (%s): the broker did not take it; it will be sent again: %s", message.pk,
                       message.task, exc)
        _mark(message, attempts=F("attempts") + 1, last_error=f"{type(exc).__name__}: {exc}"[:2000])
        return False
    _mark(message, sent_at=timezone.now(), attempts=F("attempts") + 1, last_error="")
    return True


def _mark(message: OutboxMessage, **fields) -> None:
    try:
        OutboxMessage.objects.filter(pk=message.pk).update(**fields)
    except DatabaseError as exc:  # the database went away after the commit: the message may be sent twice
        logger.warning("outbox %s: could not record the attempt: %s", message.pk, exc)


def resend(*, older_than_s: float | None = None, now=None) -> int:
    """Send the messages still unsent after ``older_than_s`` (default ``PS_OUTBOX_RESEND_SECONDS``), oldest first;
    stop at the first the broker refuses. Returns how many were sent. Sent messages older than a week go."""
    now = now or timezone.now()
    older_than_s = settings.PS_OUTBOX_RESEND_SECONDS if older_than_s is None else older_than_s
    sent = 0
    with transaction.atomic():
        # skip_locked: two senders at once (two beat ticks, two default workers) never send one message together
        pending = list(OutboxMessage.objects.select_for_update(skip_locked=True)
                       .filter(sent_at__isnull=True, created_at__lte=now - timedelta(seconds=older_than_s))
                       .order_by("id")[:RESEND_BATCH])
        for message in pending:
            if not publish(message):
                break
            sent += 1
    OutboxMessage.objects.filter(sent_at__lt=now - KEEP_SENT).delete()
    if sent:
        logger.info("outbox: sent %s message(s) again", sent)
    return sent


def unsent() -> int:
    """How many messages wait for the broker."""
    return OutboxMessage.objects.filter(sent_at__isnull=True).count()
