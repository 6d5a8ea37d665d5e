"""Reads: what a rater is shown, project lists and counts."""
from __future__ import annotations

from django.db.models import Count, Q
from django.utils import timezone

from .access import is_admin
from .models import Annotation, Assignment, Item, Membership, Project, Response


def projects_visible_to(user):
    qs = Project.objects.all()
    if is_admin(user):
        return qs
    return qs.filter(memberships__user=user).exclude(status=Project.Status.ARCHIVED)


def has_written_answers(project: Project) -> bool:
    """Whether the project holds answers people wrote or revised (its sft export has rows): demonstrations,
    improved responses, critique-and-revise revisions."""
    if project.mode == Project.Mode.DEMONSTRATION:
        return Annotation.objects.filter(item__project=project).exists()
    return Annotation.objects.filter(item__project=project).filter(
        Q(source=Annotation.Source.CAI) | Q(payload__has_key="improved")).exists()


# What of a project's config names models: an arena's sources. Raters answer blind; only admins read these.
ADMIN_ONLY_CONFIG = ("sources",)


def project_config_view(project: Project, user) -> dict:
    """A project's config as ``user`` may read it: whole for admins; without what names models (an arena's
    sources) for raters, who answer blind."""
    if is_admin(user):
        return project.config
    return {k: v for k, v in project.config.items() if k not in ADMIN_ONLY_CONFIG}


def assignment_view(assignment: Assignment) -> dict:
    """The item as one rater sees it: responses in that rater's display order, no model names."""
    item = assignment.item
    texts = getattr(assignment, "response_texts", None) or dict(
        Response.objects.filter(pk__in=assignment.display_order).values_list("pk", "text")
    )
    preview = assignment.pk is None  # from ``queue_preview``: no lease
    return {
        "id": item.pk,
        "prompt": {"messages": item.prompt.messages},
        "responses": [{"id": rid, "text": texts[rid]} for rid in assignment.display_order],
        "lease_expires_at": None if preview else assignment.expires_at,
        **({"preview": True} if preview else {}),
    }


def queue_preview(*, project: Project) -> Assignment | None:
    """What the queue serves next, without leasing it: for admins who are not members (they look, they do not
    take raters' places) and for HEAD. The best open item (priority first, gold items last) in canonical order,
    as an unsaved assignment that expires now; None when nothing is open."""
    if project.status != Project.Status.ACTIVE or project.mode == Project.Mode.ARENA:
        return None
    item = (Item.objects.filter(project=project, is_complete=False).select_related("prompt")
            .order_by("is_gold", "-priority", "id").first())
    if item is None:
        return None
    now = timezone.now()
    return Assignment(item=item, project=project, display_order=list(item.item_responses.values_list(
        "response_id", flat=True)), is_gold=item.is_gold, leased_at=now, expires_at=now)


def item_admin_view(item: Item) -> dict:
    """An item with provenance, for admins."""
    responses = [
        {"id": ir.response_id, "text": ir.response.text, "model": ir.response.source, "params": ir.response.params}
        for ir in item.item_responses.select_related("response")
    ]
    return {
        "id": item.pk, "prompt_id": item.prompt_id, "external_id": item.prompt.external_id,
        "messages": item.prompt.messages, "responses": responses, "is_gold": item.is_gold,
        "gold_answer": item.gold_answer, "priority": item.priority, "overlap": item.overlap,
        "annotations_count": item.annotations_count, "is_complete": item.is_complete, "round": item.round,
    }


def project_counts(project: Project) -> dict:
    items = Item.objects.filter(project=project).aggregate(
        items=Count("id"),
        complete=Count("id", filter=Q(is_complete=True)),
        gold=Count("id", filter=Q(is_gold=True)),
    )
    annotations = Annotation.objects.filter(item__project=project)
    by_source = dict(annotations.values_list("source").annotate(n=Count("id")).values_list("source", "n"))
    per_rater = list(
        annotations.filter(rater__isnull=False, source=Annotation.Source.HUMAN)
        .values("rater__username")
        .annotate(annotations=Count("id"))
        .order_by("-annotations", "rater__username")
    )
    return {
        "items": items["items"],
        "complete_items": items["complete"],
        "gold_items": items["gold"],
        "annotations": by_source.get(Annotation.Source.HUMAN, 0),
        "annotations_by_source": by_source,
        "raters": [{"username": r["rater__username"], "annotations": r["annotations"]} for r in per_rater],
    }


def rater_progress(user, project: Project) -> dict:
    """What a rater sees about their own work in a project."""
    done = Annotation.objects.filter(item__project=project, rater=user).count()
    membership = Membership.objects.filter(project=project, user=user).first()
    if project.mode == Project.Mode.ARENA:  # no queue: what is left are the rater's own battles not voted yet
        open_items = Item.objects.filter(project=project, is_complete=False, assignments__rater=user).count()
    else:
        open_items = Item.objects.filter(project=project, is_complete=False, is_gold=False).exclude(
            assignments__rater=user, assignments__status__in=[Assignment.Status.SUBMITTED, Assignment.Status.SKIPPED]
        ).count()
    return {
        "annotated": done,
        "open_items": open_items,
        "paused": bool(membership and membership.is_paused),
        "paused_reason": membership.paused_reason if membership else "",
    }
