"""Gold items: per-rater accuracy, and pausing a rater whose accuracy falls below the bar."""
from __future__ import annotations

from django.db.models import Count, Q

from .models import Annotation, Membership, Project


def gold_accuracy(*, project_id: int, rater_id: int, since=None) -> tuple[int, float | None]:
    """(gold answers given, share correct) for one rater in one project, optionally after ``since``."""
    qs = Annotation.objects.filter(item__project_id=project_id, rater_id=rater_id, item__is_gold=True)
    if since is not None:
        qs = qs.filter(created_at__gt=since)
    row = qs.aggregate(
        n=Count("id", filter=Q(gold_correct__isnull=False)), ok=Count("id", filter=Q(gold_correct=True))
    )
    return row["n"], (row["ok"] / row["n"] if row["n"] else None)


def gold_check_rater(*, project_id: int, rater_id: int) -> bool:
    """Pause the rater when, after ``gold_min_items`` gold answers, accuracy is below the bar.

    Returns True when the rater was paused by this call. When an admin lifts a pause, accuracy
    counts again from that moment, so the rater gets a fresh ``gold_min_items`` answers.
    """
    project = Project.objects.get(pk=project_id)
    membership = Membership.objects.filter(project_id=project_id, user_id=rater_id).first()
    if membership is None or membership.is_paused:
        return False
    n, accuracy = gold_accuracy(project_id=project_id, rater_id=rater_id, since=membership.gold_since)
    if accuracy is None or n < project.config.get("gold_min_items", 5):
        return False
    if accuracy >= project.config.get("gold_min_accuracy", 0.6):
        return False
    reason = (
        f"Paused: gold accuracy {accuracy:.0%} over {n} gold items is below "
        f"{project.config.get('gold_min_accuracy', 0.6):.0%}. An admin can lift the pause."
    )
    updated = Membership.objects.filter(pk=membership.pk, is_paused=False).update(is_paused=True, paused_reason=reason)
    return bool(updated)
