"""Active learning: serve first the items the current reward model is least sure about.

Switched per project with ``config.active_learning``. ``active_learning_score`` queues a job (Celery, training
queue) that scores every response of the project's open items with a reward checkpoint (default: the newest
checkpoint of a succeeded reward run on the project) and writes each item's priority:

    priority = -round(gap * 1000)

where ``gap`` is |score A - score B| for a pair (for a ranking item: the smallest gap between two of its
responses). The queue already serves higher priorities first, so the closest pairs come first. Items added
after the scoring keep priority 0 and so come before every scored item until the next scoring.
``active_learning_clear`` puts open items back to priority 0 (e.g. after switching the option off). The
priorities are written by annotation's services (``items_priority_set``, ``items_priority_reset``).
"""
from __future__ import annotations

from django.db import transaction

from annotation.errors import Conflict, Invalid
from annotation.models import Item, Project
from annotation.services import items_priority_reset, items_priority_set

from .models import ProjectJob
from .project_jobs import (check_reward_checkpoint, job_open, job_progress, job_queue, job_workdir,
                           latest_reward_checkpoint, reward_scores)

PRIORITY_SCALE = 1000
PRIORITY_FLOOR = -(2**31) + 1  # Item.priority is a 32-bit integer


def uncertainty_priority(scores: list[float]) -> int:
    """The queue priority of an item whose responses the reward model scored ``scores``: closest first."""
    ordered = sorted(scores)
    gap = min(b - a for a, b in zip(ordered, ordered[1:])) if len(ordered) > 1 else 0.0
    return max(-round(gap * PRIORITY_SCALE), PRIORITY_FLOOR)


@transaction.atomic
def active_learning_score(*, project: Project, reward_checkpoint=None, created_by=None):
    """Queue uncertainty scoring of ``project``'s open items; returns the ProjectJob (a queued or running one is
    returned again on a double submit). Needs ``config.active_learning`` on and a pairwise or ranking project."""
    if not project.config.get("active_learning"):
        raise Conflict("Active learning is off for this project; turn config.active_learning on first.",
                       field="config.active_learning")
    if project.mode == "rating":
        raise Invalid("uncertainty compares responses: pairwise or ranking projects only", field="mode")
    if reward_checkpoint is None:
        reward_checkpoint = latest_reward_checkpoint(project)
        if reward_checkpoint is None:
            raise Invalid("is required: no reward run on this project has succeeded yet",
                               field="reward_checkpoint")
    check_reward_checkpoint(reward_checkpoint)
    existing = job_open(project, ProjectJob.Kind.ACTIVE_LEARNING)
    if existing is not None:
        return existing
    job = ProjectJob.objects.create(project=project, kind=ProjectJob.Kind.ACTIVE_LEARNING,
                                    reward_checkpoint=reward_checkpoint, created_by=created_by,
                                    params={"reward_checkpoint": reward_checkpoint.pk})
    job_queue(job)
    return job


def active_learning_clear(*, project: Project) -> int:
    """Put the project's open items back to priority 0; returns how many changed."""
    return items_priority_reset(project=project)


def active_learning_execute(*, job) -> dict:
    """The worker side: score the open items' responses and write their priorities; returns the job result."""
    project = job.project
    items = list(
        Item.objects.filter(project=project, is_complete=False, is_gold=False)
        .select_related("prompt")
        .prefetch_related("item_responses__response")
        .order_by("id")
    )
    rows = ({"key": str(ir.response_id), "prompt": item.prompt.messages, "completion": ir.response.text}
            for item in items for ir in item.item_responses.all())
    scores = reward_scores(checkpoint=job.reward_checkpoint, rows=rows, workdir=job_workdir(job),
                           on_progress=lambda step, total: job_progress(job, step, total))
    priorities = {item.pk: uncertainty_priority([scores[str(ir.response_id)] for ir in item.item_responses.all()])
                  for item in items}
    items_priority_set(priorities=priorities)  # an item finished meanwhile keeps the priority it had
    gaps = sorted(-priority / PRIORITY_SCALE for priority in priorities.values())
    return {
        "items_scored": len(items),
        "reward_checkpoint": job.reward_checkpoint_id,
        "smallest_gap": gaps[0] if gaps else None,
        "median_gap": gaps[len(gaps) // 2] if gaps else None,
    }
