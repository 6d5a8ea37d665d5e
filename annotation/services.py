"""Writes: projects, members, the rater queue, submissions, edits and skips."""
from __future__ import annotations

import random
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import Count, Exists, F, OuterRef, Q, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.text import slugify

from .access import access_item, access_own_annotation
from .errors import Conflict, Forbidden, NotFound
from .models import Annotation, Assignment, Item, Membership, Project
from .payloads import gold_correct, resolve_payload
from .project_config import validate_project_config

User = get_user_model()


# --- projects ------------------------------------------------------------------------------


def _unique_slug(name: str) -> str:
    base = slugify(name)[:60] or "project"
    slug, n = base, 2
    while Project.objects.filter(slug=slug).exists():
        slug, n = f"{base}-{n}", n + 1
    return slug


@transaction.atomic
def project_create(*, name: str, mode: str, guidelines: str = "", config: dict | None = None,
                   slug: str | None = None, created_by=None) -> Project:
    name = (name or "").strip()
    if not name:
        raise ValidationError({"name": ["is required"]})
    full_config = validate_project_config(mode, config)
    if slug and Project.objects.filter(slug=slug).exists():
        raise ValidationError({"slug": [f"'{slug}' is taken"]})
    return Project.objects.create(
        name=name, slug=slug or _unique_slug(name), mode=mode, guidelines=guidelines or "",
        config=full_config, created_by=created_by,
    )


@transaction.atomic
def project_update(*, project: Project, name: str | None = None, guidelines: str | None = None,
                   config: dict | None = None, status: str | None = None) -> Project:
    if name is not None:
        project.name = name.strip() or project.name
    if guidelines is not None:
        project.guidelines = guidelines
    if config is not None:
        project.config = validate_project_config(project.mode, {**project.config, **config})
    if status is not None:
        if status not in Project.Status.values:
            raise ValidationError({"status": [f"must be one of {', '.join(Project.Status.values)}"]})
        project.status = status
    project.save()
    return project


def member_add(*, project: Project, username: str) -> Membership:
    user = User.objects.filter(username=username, is_active=True).first()
    if user is None:
        raise ValidationError({"username": [f"no active user '{username}'"]})
    membership, _ = Membership.objects.get_or_create(project=project, user=user)
    return membership


def member_remove(*, project: Project, username: str) -> None:
    Membership.objects.filter(project=project, user__username=username).delete()


def member_set_paused(*, project: Project, user, paused: bool, reason: str = "") -> Membership:
    membership = Membership.objects.filter(project=project, user=user).first()
    if membership is None:
        raise NotFound("Not a member of this project.")
    membership.is_paused, membership.paused_reason = paused, (reason if paused else "")
    if not paused:
        membership.gold_since = timezone.now()  # a lifted pause starts a fresh gold count
    membership.save(update_fields=["is_paused", "paused_reason", "gold_since"])
    return membership


# --- the queue -----------------------------------------------------------------------------


def _live_leases(now):
    """Count of other raters' live leases on the outer item."""
    return Coalesce(
        Subquery(
            Assignment.objects.filter(item=OuterRef("pk"), status=Assignment.Status.LEASED, expires_at__gt=now)
            .order_by()
            .values("item")
            .annotate(n=Count("*"))
            .values("n")[:1]
        ),
        0,
    )


_CLAIM_SQL = """
SELECT i.id FROM annotation_item i
WHERE i.project_id = %(project)s AND i.is_complete = false AND i.is_gold = %(gold)s
  AND NOT (i.id = ANY(%(exclude)s))
  AND NOT EXISTS (
    SELECT 1 FROM annotation_assignment a
    WHERE a.item_id = i.id AND a.rater_id = %(rater)s AND a.status IN ('submitted', 'skipped'))
  AND (%(gold)s OR i.annotations_count + (
    SELECT count(*) FROM annotation_assignment a
    WHERE a.item_id = i.id AND a.status = 'leased' AND a.expires_at > %(now)s) < i.overlap)
ORDER BY i.priority DESC, i.id
LIMIT 1
FOR UPDATE OF i SKIP LOCKED
"""


def _claim_item(project: Project, rater, *, gold: bool, now, exclude=()) -> Item | None:
    """Lock the best open item for ``rater`` (priority first), skipping rows others hold.

    Exact overlap: the item row lock serialises every lease and submission of one item, and an
    item is only leased while annotations + live leases < overlap. The filter below runs on the
    statement's snapshot, which can predate a lease committed just before we got the lock, so
    ``queue_next`` checks the locked item again with a fresh statement. Gold items are shown to
    every rater once, so they have no overlap cap.

    On PostgreSQL this is one hand-written statement (it is the hot path, and a prepared
    statement skips re-planning); elsewhere the same filter through the ORM, without SKIP LOCKED.
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(_CLAIM_SQL, {"project": project.pk, "gold": gold, "exclude": list(exclude),
                                        "rater": rater.pk, "now": now})
            row = cursor.fetchone()
        if row is None:
            return None
        return Item.objects.select_related("prompt").prefetch_related("item_responses").get(pk=row[0])
    done_by_rater = Assignment.objects.filter(
        item=OuterRef("pk"), rater=rater, status__in=[Assignment.Status.SUBMITTED, Assignment.Status.SKIPPED]
    )
    qs = Item.objects.filter(project=project, is_complete=False, is_gold=gold).filter(~Exists(done_by_rater))
    if exclude:
        qs = qs.exclude(pk__in=exclude)
    if not gold:
        qs = qs.annotate(live=_live_leases(now)).filter(annotations_count__lt=F("overlap") - F("live"))
    return (
        qs.select_related("prompt")
        .prefetch_related("item_responses")
        .order_by("-priority", "id")
        .select_for_update(of=("self",))
        .first()
    )


def _claim_open_item(project: Project, rater, *, gold: bool, now) -> Item | None:
    """Claim an item and confirm, now that its row is locked, that it still has room."""
    full: list[int] = []
    for _ in range(50):
        item = _claim_item(project, rater, gold=gold, now=now, exclude=full)
        if item is None or gold:
            return item
        if item.annotations_count + _others_live_leases(item, rater, now) < item.overlap:
            return item
        full.append(item.pk)  # filled by a lease committed after our snapshot: try the next one
    return None


def _gold_due(project: Project, rater) -> bool:
    rate = project.config.get("gold_rate", 0)
    if not rate:
        return False
    counts = Assignment.objects.filter(project=project, rater=rater).aggregate(
        n=Count("id"), gold=Count("id", filter=Q(is_gold=True))
    )
    return counts["gold"] < int(rate * (counts["n"] + 1))


def queue_next(*, rater, project: Project, now=None) -> Assignment | None:
    """The rater's current lease, or a new lease on the next item they have not seen; None when done.

    ``project`` comes from ``access_project``, which attaches the rater's membership.
    """
    now = now or timezone.now()
    membership = getattr(project, "membership", None)
    if membership is None and not hasattr(project, "membership"):
        membership = Membership.objects.filter(project=project, user=rater).first()
    if membership and membership.is_paused:
        raise Forbidden(membership.paused_reason or "You are paused on this project; ask an admin.")
    if project.status != Project.Status.ACTIVE:
        return None
    live = (
        Assignment.objects.filter(rater=rater, project=project, status=Assignment.Status.LEASED, expires_at__gt=now)
        .select_related("item__prompt")
        .order_by("leased_at")
        .first()
    )
    if live is not None:
        return live
    with transaction.atomic():
        want_gold = _gold_due(project, rater)
        item = _claim_open_item(project, rater, gold=want_gold, now=now)
        if item is None and project.config.get("gold_rate", 0):
            item = _claim_open_item(project, rater, gold=not want_gold, now=now)
        if item is None:
            return None
        order = [ir.response_id for ir in item.item_responses.all()]
        random.shuffle(order)
        # One statement: a new lease, or a fresh one over this rater's own expired lease.
        (assignment,) = Assignment.objects.bulk_create(
            [Assignment(item=item, rater=rater, project=project, status=Assignment.Status.LEASED,
                        display_order=order, is_gold=item.is_gold, leased_at=now,
                        expires_at=now + timedelta(seconds=project.lease_seconds))],
            update_conflicts=True, unique_fields=["item", "rater"],
            update_fields=["status", "display_order", "leased_at", "expires_at", "finished_at"],
        )
        assignment.item = item
    return assignment


def _others_live_leases(item: Item, rater, now) -> int:
    return (
        Assignment.objects.filter(item=item, status=Assignment.Status.LEASED, expires_at__gt=now)
        .exclude(rater=rater)
        .count()
    )


@transaction.atomic
def assignment_skip(*, rater, item_id, now=None) -> Assignment:
    now = now or timezone.now()
    item = access_item(rater, item_id, lock=True)
    assignment = Assignment.objects.filter(item=item, rater=rater).first()
    if assignment is None:
        order = list(item.item_responses.values_list("response_id", flat=True))
        assignment = Assignment(item=item, rater=rater, project=item.project, display_order=order,
                                is_gold=item.is_gold, leased_at=now, expires_at=now)
    elif assignment.status == Assignment.Status.SUBMITTED:
        raise Conflict("You have already annotated this item.")
    assignment.status, assignment.finished_at = Assignment.Status.SKIPPED, now
    assignment.save()
    return assignment


# --- submissions ---------------------------------------------------------------------------


def _check_time_spent(time_spent_ms) -> int | None:
    if time_spent_ms is None:
        return None
    if isinstance(time_spent_ms, bool) or not isinstance(time_spent_ms, int) or not 0 <= time_spent_ms <= 86_400_000:
        raise ValidationError({"time_spent_ms": ["must be an integer number of milliseconds (0 to 1 day)"]})
    return time_spent_ms


def _check_idempotency_key(key) -> str:
    key = key or ""
    if not isinstance(key, str) or len(key) > 100:
        raise ValidationError({"idempotency_key": ["must be a string of at most 100 characters"]})
    return key


@transaction.atomic
def annotation_submit(*, rater, item_id, payload, idempotency_key: str = "", time_spent_ms=None,
                      now=None) -> tuple[Annotation, bool]:
    """Store a rater's annotation. Returns (annotation, created); a replay returns the first one."""
    now = now or timezone.now()
    key = _check_idempotency_key(idempotency_key)
    time_spent_ms = _check_time_spent(time_spent_ms)
    item = access_item(rater, item_id, lock=True)  # serialises all writes to this item
    project = item.project
    if item.membership and item.membership.is_paused:
        raise Forbidden(item.membership.paused_reason or "You are paused on this project.")
    earlier = Q(item=item, rater=rater) | (Q(rater=rater, idempotency_key=key) if key else Q(pk__in=[]))
    for previous in Annotation.objects.filter(earlier):
        if key and previous.idempotency_key == key:
            if previous.item_id != item.pk:
                raise Conflict("This idempotency key was used for another item.", field="idempotency_key")
            return previous, False
        raise Conflict("You have already annotated this item; edit your annotation instead.")

    assignment = Assignment.objects.filter(item=item, rater=rater).first()
    live = assignment is not None and assignment.status == Assignment.Status.LEASED and assignment.expires_at > now
    if not live and not item.is_gold:
        if item.annotations_count + _others_live_leases(item, rater, now) >= item.overlap:
            raise Conflict("Your lease on this item expired and it no longer needs annotations.")
    if project.status != Project.Status.ACTIVE:
        raise Conflict("This project is not accepting annotations.")
    if assignment is None:  # an annotation without a lease, allowed while the item needs one
        order = list(item.item_responses.values_list("response_id", flat=True))
        assignment = Assignment.objects.create(item=item, rater=rater, project=project, display_order=order,
                                               is_gold=item.is_gold, leased_at=now, expires_at=now)
    resolved = resolve_payload(project.mode, payload, project.config, assignment.display_order)

    annotation = Annotation.objects.create(
        item=item, rater=rater, assignment=assignment, source=Annotation.Source.HUMAN,
        payload=resolved, raw_payload=payload, display_order=assignment.display_order,
        time_spent_ms=time_spent_ms, idempotency_key=key,
        gold_correct=gold_correct(project.mode, item.gold_answer, resolved) if item.is_gold else None,
    )
    Assignment.objects.filter(pk=assignment.pk).update(status=Assignment.Status.SUBMITTED, finished_at=now)
    count = item.annotations_count + 1  # exact: we hold the item's row lock
    Item.objects.filter(pk=item.pk).update(
        annotations_count=count, is_complete=not item.is_gold and count >= item.overlap
    )
    if item.is_gold:
        from .gold import gold_check_rater  # noqa: PLC0415 - import cycle
        transaction.on_commit(lambda: gold_check_rater(project_id=project.pk, rater_id=rater.pk))
    return annotation, True


@transaction.atomic
def annotation_edit(*, rater, annotation_id, payload, time_spent_ms=None, now=None) -> Annotation:
    """A rater edits their own annotation while its project is active and the edit window is open."""
    now = now or timezone.now()
    annotation = access_own_annotation(rater, annotation_id, lock=True)
    project = annotation.item.project
    window = project.config.get("edit_window_seconds", 1800)
    if project.status != Project.Status.ACTIVE or annotation.created_at + timedelta(seconds=window) < now:
        raise Conflict("This annotation can no longer be edited.")
    resolved = resolve_payload(project.mode, payload, project.config, annotation.display_order)
    annotation.payload, annotation.raw_payload = resolved, payload
    if annotation.item.is_gold:
        annotation.gold_correct = gold_correct(project.mode, annotation.item.gold_answer, resolved)
    if time_spent_ms is not None:
        annotation.time_spent_ms = (annotation.time_spent_ms or 0) + _check_time_spent(time_spent_ms)
    annotation.save()
    return annotation


# --- gold and priority ---------------------------------------------------------------------


@transaction.atomic
def item_set_gold(*, item: Item, is_gold: bool, payload=None) -> Item:
    """Mark an item gold with its right answer, given in the item's canonical order."""
    if is_gold:
        if payload is None:
            raise ValidationError({"payload": ["a gold item needs its right answer"]})
        order = list(item.item_responses.values_list("response_id", flat=True))
        item.gold_answer = resolve_payload(item.project.mode, payload, item.project.config, order)
    else:
        item.gold_answer = None
    item.is_gold = is_gold
    item.is_complete = False if is_gold else item.annotations_count >= item.overlap
    item.save(update_fields=["is_gold", "gold_answer", "is_complete"])
    return item


@transaction.atomic
def gold_from_imported(*, project: Project, limit: int = 50) -> int:
    """Turn items that came with an imported judgement into gold items (up to ``limit``)."""
    imported = (
        Annotation.objects.filter(item__project=project, item__is_gold=False, source=Annotation.Source.IMPORTED)
        .select_related("item")
        .order_by("item_id")[:limit]
    )
    count = 0
    for annotation in imported:
        Item.objects.filter(pk=annotation.item_id).update(is_gold=True, gold_answer=annotation.payload, is_complete=False)
        count += 1
    return count


def item_set_priority(*, item: Item, priority: int) -> Item:
    item.priority = priority
    item.save(update_fields=["priority"])
    return item
