"""Reads for the pages: the rater's home, the item on screen, the answer a rater may still edit."""
from __future__ import annotations

import logging
from datetime import timedelta

from django.utils import timezone

from annotation.gold import gold_accuracy
from annotation.quality import cached_project_quality
from annotation.models import Annotation, Assignment, Item, Membership, Project, Response
from annotation.selectors import project_counts, projects_visible_to, rater_progress

from .markdown import render_markdown

LETTERS = "ABCDEFGHIJ"
logger = logging.getLogger(__name__)


def _quality_for_rater(project: Project, user) -> dict | None:
    """This rater's own agreement with others and median time, from the project's quality report.

    The report is computed again only when the project's annotations have changed.
    """
    try:
        report = cached_project_quality(project)
    except Exception:  # noqa: BLE001 - a figure that cannot be computed is left out, never a 500
        logger.exception("quality report failed for project %s", project.pk)
        return None
    mine = next((r for r in report.get("raters", []) if r.get("username") == user.get_username()), None)
    if mine is None:
        return None
    return {"agreement": mine.get("agreement_with_others"), "items_shared": mine.get("items_shared", 0),
            "median_time_ms": mine.get("median_time_ms")}


def home_rows(user) -> list[dict]:
    """The projects a user works in, with their own progress and gold accuracy."""
    rows = []
    for project in projects_visible_to(user).exclude(status=Project.Status.ARCHIVED):
        progress = rater_progress(user, project)
        since = Membership.objects.filter(project=project, user=user).values_list("gold_since", flat=True).first()
        gold_n, gold_acc = gold_accuracy(project_id=project.pk, rater_id=user.pk, since=since)
        rows.append({
            "project": project,
            "progress": progress,
            "gold_answers": gold_n,
            "gold_accuracy": gold_acc,
            "quality": _quality_for_rater(project, user),
        })
    return rows


def messages_view(messages) -> list[dict]:
    out = []
    for message in messages if isinstance(messages, list) else []:
        if not isinstance(message, dict):
            continue
        out.append({"role": str(message.get("role", "user")), "html": render_markdown(message.get("content", ""))})
    return out


def item_view(item: Item, display_order: list[int]) -> dict:
    """An item in one rater's display order: letters and rendered text, never the model."""
    texts = dict(Response.objects.filter(pk__in=display_order).values_list("pk", "text"))
    return {
        "id": item.pk,
        "is_gold": item.is_gold,
        "messages": messages_view(item.prompt.messages),
        "responses": [
            {"id": rid, "letter": LETTERS[i], "number": i + 1, "html": render_markdown(texts.get(rid, "")),
             "text": texts.get(rid, "")}
            for i, rid in enumerate(display_order)
        ],
    }


def assignment_screen(assignment: Assignment, now=None) -> dict:
    now = now or timezone.now()
    item = Item.objects.select_related("prompt").get(pk=assignment.item_id)
    view = item_view(item, assignment.display_order)
    view["lease_seconds_left"] = max(int((assignment.expires_at - now).total_seconds()), 0)
    return view


def last_editable_annotation(user, project: Project, now=None) -> Annotation | None:
    """The rater's newest annotation in ``project`` while it may still be edited."""
    if project.status != Project.Status.ACTIVE:
        return None
    now = now or timezone.now()
    window = project.config.get("edit_window_seconds", 1800)
    return (
        Annotation.objects.filter(item__project=project, rater=user, created_at__gt=now - timedelta(seconds=window))
        .only("id", "item_id", "created_at")
        .order_by("-created_at")
        .first()
    )


def project_admin_view(project: Project) -> dict:
    members = list(
        Membership.objects.filter(project=project).select_related("user").order_by("user__username")
    )
    return {"counts": project_counts(project), "members": members}
