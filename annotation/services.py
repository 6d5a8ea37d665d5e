"""Writes: projects, members, the rater queue, submissions, edits and skips."""
from __future__ import annotations

import random
import zlib
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Count, Exists, F, OuterRef, Q, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.text import slugify

from . import pg
from .access import access_item, access_item_to_submit, access_own_annotation
from .errors import Conflict, Forbidden, Invalid, NotFound
from .gold import gold_check_rater
from .models import Annotation, Assignment, Item, ItemResponse, Membership, Project, Prompt, Response
from .payloads import gold_correct, resolve_payload
from .project_config import validate_project_config
from .submissions import Submission, parse_submission

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
        raise Invalid("is required", field="name")
    full_config = validate_project_config(mode, config)
    if slug and Project.objects.filter(slug=slug).exists():
        raise Invalid(f"'{slug}' is taken", field="slug")
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
        if not isinstance(config, dict):
            raise Invalid("must be an object of options (the ones to change)", field="config")
        project.config = validate_project_config(project.mode, {**project.config, **config})
    if status is not None:
        if status not in Project.Status.values:
            raise Invalid(f"must be one of {', '.join(Project.Status.values)}", field="status")
        project.status = status
    project.save()
    return project


def member_add(*, project: Project, username: str) -> Membership:
    user = User.objects.filter(username=username, is_active=True).first()
    if user is None:
        raise Invalid(f"no active user '{username}'", field="username")
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
    changed = Membership.objects.filter(pk=membership.pk).update(
        is_paused=membership.is_paused, paused_reason=membership.paused_reason, gold_since=membership.gold_since)
    if not changed:  # removed meanwhile
        raise NotFound("Not a member of this project.")
    return membership


# --- the queue -----------------------------------------------------------------------------


def queue_shuffle_seed(seed: str) -> None:
    """Make the queue's display-order shuffles repeatable from here on, in this process and on this database
    connection (the demo's simulated raters): Python's random for the ORM path, PostgreSQL's setseed for the
    connection's ps_next_lease."""
    random.seed(seed)
    if pg.enabled():
        pg.queue.seed_shuffles(zlib.crc32(seed.encode()) / 2**32)


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


def _claim_item(project: Project, rater, *, gold: bool, now, exclude=()) -> Item | None:
    """Lock the best open item for ``rater`` (priority first); items other raters hold locked are skipped.

    Exact overlap: the item row lock serialises every lease and submission of one item, and an
    item is only leased while annotations + live leases < overlap; ``_claim_open_item`` checks the
    locked item again. Gold items are shown to every rater once, so they have no overlap cap.
    (SQLite has no row locks: its transactions take the database's write lock as they begin.)
    """
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
        .select_for_update(of=("self",), skip_locked=True)
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


def _next_lease(rater, project: Project, now) -> Assignment | None:
    """The rater's live lease, or a new lease on the best open item. PostgreSQL's ``ps_next_lease``
    (``annotation.pg.functions``) does the same in one call."""
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
    if project.status != Project.Status.ACTIVE or project.mode == Project.Mode.ARENA:
        return None  # an arena has no queue: each rater votes on the battles they start
    if not pg.enabled():
        return _next_lease(rater, project, now)
    gold_rate = project.config.get("gold_rate", 0)
    return pg.queue.next_lease(
        project_id=project.pk, rater_id=rater.pk, gold=bool(gold_rate) and _gold_due(project, rater),
        other_kind=bool(gold_rate), now=now, expires=now + timedelta(seconds=project.lease_seconds),
    )


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


def _is_live(assignment: Assignment | None, now) -> bool:
    return assignment is not None and assignment.status == Assignment.Status.LEASED and assignment.expires_at > now


def _check_gold_after_commit(project: Project, rater) -> None:
    transaction.on_commit(lambda: gold_check_rater(project_id=project.pk, rater_id=rater.pk))


def _earlier_annotation(item: Item, rater, key: str) -> Annotation | None:
    """The rater's annotation of this item or with this key: a replay returns it, anything else conflicts."""
    earlier = Q(item=item, rater=rater) | (Q(rater=rater, idempotency_key=key) if key else Q(pk__in=[]))
    for previous in Annotation.objects.filter(earlier):
        if key and previous.idempotency_key == key:
            if previous.item_id != item.pk:
                raise Conflict("This idempotency key was used for another item.", field="idempotency_key")
            return previous
        raise Conflict("You have already annotated this item; edit your annotation instead.")
    return None


def annotation_submit(*, rater, item_id, payload, idempotency_key: str = "", time_spent_ms=None,
                      now=None) -> tuple[Annotation, bool]:
    """``submission_store`` for callers in Python: the fields checked by ``parse_submission`` first."""
    submission = parse_submission({"payload": payload, "idempotency_key": idempotency_key,
                                   "time_spent_ms": time_spent_ms})
    return submission_store(rater=rater, item_id=item_id, submission=submission, now=now)


def submission_store(*, rater, item_id, submission: Submission, now=None) -> tuple[Annotation, bool]:
    """Store a rater's annotation. Returns (annotation, created); a replay returns the first one.

    On PostgreSQL a submission under a live lease (nearly all of them) takes two statements; anything
    else, and every submission elsewhere, takes the full path under the item's row lock.
    """
    now = now or timezone.now()
    if pg.enabled():
        annotation = _store_under_live_lease(rater, item_id, submission, now)
        if annotation is not None:
            return annotation, True
    return _submission_store_locked(rater, item_id, submission, now)


def _store_under_live_lease(rater, item_id, submission: Submission, now) -> Annotation | None:
    """PostgreSQL's common case in two statements and no transaction round trips: read, then store.
    None when it does not apply (no live lease, paused, closed project, an earlier annotation or key):
    the full path then decides."""
    item, assignment, _others = access_item_to_submit(rater, item_id, now=now, lock=False)
    project = item.project
    if (item.membership and item.membership.is_paused) or project.status != Project.Status.ACTIVE \
            or project.mode == Project.Mode.ARENA or not _is_live(assignment, now):
        return None
    resolved = resolve_payload(project.mode, submission.payload, project.config, assignment.display_order)
    annotation = pg.submit.store(
        item_id=item.pk, rater_id=rater.pk, assignment=assignment, payload=resolved, raw_payload=submission.payload,
        key=submission.idempotency_key, time_spent_ms=submission.time_spent_ms, now=now,
        gold_correct=gold_correct(project.mode, item.gold_answer, resolved) if item.is_gold else None,
    )
    if annotation is not None and item.is_gold:
        _check_gold_after_commit(project, rater)
    return annotation


@transaction.atomic
def _submission_store_locked(rater, item_id, submission: Submission, now) -> tuple[Annotation, bool]:
    """Every check, under the item's row lock (which serialises all writes to an item)."""
    item, assignment, others = access_item_to_submit(rater, item_id, now=now, lock=True)
    project, key = item.project, submission.idempotency_key
    if project.mode == Project.Mode.ARENA:
        raise Conflict(ARENA_VOTES_ELSEWHERE)
    if item.membership and item.membership.is_paused:
        raise Forbidden(item.membership.paused_reason or "You are paused on this project.")
    live = _is_live(assignment, now)
    if pg.enabled() and not live:  # read on a snapshot from before the lock: read again
        assignment, others = pg.submit.assignment_state(item.pk, rater.pk, now)
        live = _is_live(assignment, now)
    if previous := _earlier_annotation(item, rater, key):
        return previous, False
    if not live and not item.is_gold:
        if others is None:
            others = _others_live_leases(item, rater, now)
        if item.annotations_count + others >= item.overlap:
            raise Conflict("Your lease on this item expired and it no longer needs annotations.")
    if project.status != Project.Status.ACTIVE:
        raise Conflict("This project is not accepting annotations.")
    if assignment is None:  # an annotation without a lease, allowed while the item needs one
        order = list(item.item_responses.values_list("response_id", flat=True))
        assignment = Assignment.objects.create(item=item, rater=rater, project=project, display_order=order,
                                               is_gold=item.is_gold, leased_at=now, expires_at=now)
    resolved = resolve_payload(project.mode, submission.payload, project.config, assignment.display_order)
    count = item.annotations_count + 1  # exact: we hold the item's row lock
    annotation = Annotation.objects.create(
        item=item, rater=rater, assignment=assignment, source=Annotation.Source.HUMAN,
        payload=resolved, raw_payload=submission.payload, display_order=assignment.display_order,
        time_spent_ms=submission.time_spent_ms, idempotency_key=key,
        gold_correct=gold_correct(project.mode, item.gold_answer, resolved) if item.is_gold else None,
    )
    Assignment.objects.filter(pk=assignment.pk).update(status=Assignment.Status.SUBMITTED, finished_at=now)
    Item.objects.filter(pk=item.pk).update(annotations_count=count, is_complete=not item.is_gold and count >= item.overlap)
    if item.is_gold:
        _check_gold_after_commit(project, rater)
    return annotation, True


def annotation_edit(*, rater, annotation_id, payload, time_spent_ms=None, now=None) -> Annotation:
    """``submission_edit`` for callers in Python: the fields checked by ``parse_submission`` first."""
    submission = parse_submission({"payload": payload, "time_spent_ms": time_spent_ms}, edit=True)
    return submission_edit(rater=rater, annotation_id=annotation_id, submission=submission, now=now)


@transaction.atomic
def submission_edit(*, rater, annotation_id, submission: Submission, now=None) -> Annotation:
    """A rater edits their own annotation while its project is active and the edit window is open."""
    now = now or timezone.now()
    annotation = access_own_annotation(rater, annotation_id, lock=True)
    project = annotation.item.project
    if project.mode == Project.Mode.ARENA:
        raise Conflict("An arena vote cannot be changed: the names of both sources were shown after it.")
    window = project.config.get("edit_window_seconds", 1800)
    if project.status != Project.Status.ACTIVE or annotation.created_at + timedelta(seconds=window) < now:
        raise Conflict("This annotation can no longer be edited.")
    resolved = resolve_payload(project.mode, submission.payload, project.config, annotation.display_order)
    annotation.payload, annotation.raw_payload = resolved, submission.payload
    if annotation.item.is_gold:
        annotation.gold_correct = gold_correct(project.mode, annotation.item.gold_answer, resolved)
    if submission.time_spent_ms is not None:
        annotation.time_spent_ms = (annotation.time_spent_ms or 0) + submission.time_spent_ms
    annotation.save()
    return annotation


# --- arena battles (started, generated and voted through training.arena) ------------------------

ARENA_VOTES_ELSEWHERE = "Arena battles are voted with POST /api/v1/battles/{id}/vote/."


@transaction.atomic
def arena_item_create(*, project: Project, rater, external_id: str, messages: list[dict], metadata: dict,
                      responses: list[dict], now=None) -> tuple[Item, list[int]]:
    """A battle's item: the prompt the rater wrote, one response per source (``{model_name, checkpoint_id, params}``,
    and ``text`` for a battle recorded elsewhere; empty until generated otherwise), in the order A, B, and the
    rater's assignment showing them in that order. Returns (item, response ids). Nobody else is served it: an
    arena has no queue."""
    now = now or timezone.now()
    prompt = Prompt.objects.create(project=project, external_id=external_id, messages=messages, metadata=metadata,
                                   round="arena")
    rows = Response.objects.bulk_create([
        Response(prompt=prompt, text=r.get("text") or "", model_name=r.get("model_name") or "",
                 checkpoint_id=r.get("checkpoint_id"), params=r.get("params") or {})
        for r in responses
    ])
    item = Item.objects.create(project=project, prompt=prompt, overlap=1, round="arena")
    ItemResponse.objects.bulk_create([ItemResponse(item=item, response=r, position=i) for i, r in enumerate(rows)])
    order = [r.pk for r in rows]
    Assignment.objects.create(item=item, rater=rater, project=project, display_order=order, leased_at=now,
                              expires_at=now + timedelta(seconds=project.lease_seconds))
    return item, order


def arena_response_text_set(*, response_id: int, text: str) -> None:
    """Write a response's text as far as it has been generated (a battle's answers grow while the page polls)."""
    Response.objects.filter(pk=response_id).update(text=text)


@transaction.atomic
def arena_vote_store(*, rater, item_id: int, choice: str, time_spent_ms=None, now=None) -> tuple[Annotation, bool]:
    """The rater's vote on their battle as a pairwise annotation (response ids, display order A, B). Returns
    (annotation, created); a second vote returns the first one unchanged."""
    now = now or timezone.now()
    item = Item.objects.select_for_update(of=("self",)).select_related("project").get(pk=item_id)
    previous = Annotation.objects.filter(item=item, rater=rater).first()
    if previous is not None:
        return previous, False
    assignment = Assignment.objects.get(item=item, rater=rater)
    project = item.project
    vote = parse_submission({"payload": {"choice": choice}, "time_spent_ms": time_spent_ms}, edit=True)
    resolved = resolve_payload(project.mode, vote.payload, project.config, assignment.display_order)
    annotation = Annotation.objects.create(
        item=item, rater=rater, assignment=assignment, source=Annotation.Source.HUMAN, payload=resolved,
        raw_payload=vote.payload, display_order=assignment.display_order, time_spent_ms=vote.time_spent_ms,
    )
    Assignment.objects.filter(pk=assignment.pk).update(status=Assignment.Status.SUBMITTED, finished_at=now)
    Item.objects.filter(pk=item.pk).update(annotations_count=1, is_complete=True)
    return annotation, True


# --- gold and priority ---------------------------------------------------------------------


@transaction.atomic
def item_set_gold(*, item: Item, is_gold: bool, payload=None) -> Item:
    """Mark an item gold with its right answer, given in the item's canonical order."""
    if is_gold and item.project.mode == "demonstration":
        raise Invalid("a demonstration has no one right answer, so its items cannot be gold", field="is_gold")
    if is_gold:
        if payload is None:
            raise Invalid("a gold item needs its right answer", field="payload")
        if not isinstance(payload, dict):
            raise Invalid("must be an object", field="payload")
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


# --- AI judges and queue priorities (written by training's loop) -------------------------------

JUDGE_PREFIX = "judge:"


def judge_rater(*, name: str):
    """The bot rater of an AI judge, the user ``judge:<name>`` (created inactive, with no usable password: it
    cannot log in)."""
    user, created = User.objects.get_or_create(
        username=f"{JUDGE_PREFIX}{name}"[:150], defaults={"is_active": False, "first_name": "AI judge"}
    )
    if created:
        user.set_unusable_password()
        user.save(update_fields=["password"])
    return user


def judge_annotations_store(*, project: Project, rater, answers: list[tuple[Item, list[int], dict]]) -> tuple[int, int]:
    """Store an AI judge's answers (item, order shown, payload in display positions) as ``judge`` annotations;
    returns (stored, refused). They never count towards an item's overlap; a replay adds nothing."""
    rows, refused = [], 0
    for item, order, raw in answers:
        try:
            resolved = resolve_payload(project.mode, raw, project.config, order)
        except Invalid:
            refused += 1  # e.g. a tie in a project without ties
            continue
        rows.append(Annotation(
            item=item, rater=rater, source=Annotation.Source.JUDGE, payload=resolved, raw_payload=raw,
            display_order=order,
            gold_correct=gold_correct(project.mode, item.gold_answer, resolved) if item.is_gold else None,
        ))
    with transaction.atomic():
        Annotation.objects.bulk_create(rows, ignore_conflicts=True)  # unique (item, rater)
    return len(rows), refused


@transaction.atomic
def items_priority_set(*, priorities: dict[int, int]) -> int:
    """Set the queue priority of open items ({item id: priority}); an item finished meanwhile keeps its own.
    Returns how many changed."""
    items = list(Item.objects.filter(pk__in=list(priorities), is_complete=False).only("pk", "priority"))
    for item in items:
        item.priority = priorities[item.pk]
    Item.objects.bulk_update(items, ["priority"], batch_size=2000)
    return len(items)


def items_priority_reset(*, project: Project) -> int:
    """Put the project's open items back to priority 0; returns how many changed."""
    return Item.objects.filter(project=project, is_complete=False).exclude(priority=0).update(priority=0)
