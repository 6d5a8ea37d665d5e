"""Who may touch what. One helper per object a user reaches; the only place that decides.

Anything a user may not see is reported as not found, so ids of other projects leak nothing.
Members who may see a thing but not change it get Forbidden.
"""
from __future__ import annotations

from . import pg
from .errors import Forbidden, NotFound
from .models import Annotation, Assignment, Item, Membership, Project

MAX_ID = 2**63 - 1  # ids are bigint: anything larger names no row


def as_id(value) -> int | None:
    """``value`` as a row id, or None when it cannot be one (not an integer, or out of bigint's range)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        value = value.strip()
        if not value.isascii() or not value.isdigit() or len(value) > 19:
            return None
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    return number if 0 < number <= MAX_ID else None


def is_admin(user) -> bool:
    return bool(user and user.is_authenticated and user.is_active and user.is_staff)


def is_member(user, project: Project) -> bool:
    return Membership.objects.filter(project=project, user=user).exists()


def _membership_with_project(user, column: str, value) -> Membership | None:
    """The user's membership of the project, with the project. Every rater request starts here."""
    if pg.enabled():
        return pg.auth.membership_with_project(user.pk, column, value)
    lookup = {"project__pk" if column == "id" else f"project__{column}": value}
    return Membership.objects.select_related("project").filter(user=user, **lookup).first()


def _access_project(user, column: str, value, *, admin: bool) -> Project:
    if is_admin(user):
        project = Project.objects.filter(**{"pk" if column == "id" else column: value}).first()
        if project is None:
            raise NotFound("Project not found.")
        project.membership = Membership.objects.filter(project=project, user=user).first()
        return project
    if not (user and user.is_authenticated):
        raise NotFound("Project not found.")
    membership = _membership_with_project(user, column, value)
    if membership is None:
        raise NotFound("Project not found.")
    if admin:
        raise Forbidden("Only admins can do this.")
    project = membership.project
    project.membership = membership
    return project


def access_project(user, project_id, *, admin: bool = False) -> Project:
    """The project if ``user`` may see it (members and admins); with ``admin=True`` admins only.

    The user's membership (None for an admin who is not a member) is fetched with it and kept as
    ``project.membership``.
    """
    project_id = as_id(project_id)
    if project_id is None:
        raise NotFound("Project not found.")
    return _access_project(user, "id", project_id, admin=admin)


def access_project_by_slug(user, slug: str, *, admin: bool = False) -> Project:
    """Like ``access_project``, by slug."""
    return _access_project(user, "slug", slug, admin=admin)


def admit_to_item(user, item: Item, membership: Membership | None, *, admin: bool = False) -> Item:
    """The rule for items: members of its project and admins may touch it; with ``admin=True`` only admins
    (members get Forbidden). Keeps ``membership`` (None for an admin who is not a member) as
    ``item.membership``. Callers that read the item and membership themselves (the submission's one
    statement on PostgreSQL) decide through this too."""
    if membership is None and not is_admin(user):
        raise NotFound("Item not found.")
    if admin and not is_admin(user):
        raise Forbidden("Only admins can do this.")
    item.membership = membership
    return item


def access_item(user, item_id, *, lock: bool = False, project: Project | None = None, admin: bool = False) -> Item:
    """The item if ``user`` is an admin or a member of its project (of ``project`` when given: an item of
    another project is not found); ``lock`` takes its row lock; ``admin`` as in ``admit_to_item``."""
    item_id = as_id(item_id)
    qs = Item.objects.select_related("project")
    if lock:
        qs = qs.select_for_update(of=("self",))
    if project is not None:
        qs = qs.filter(project=project)
    item = qs.filter(pk=item_id).first() if item_id is not None else None
    if item is None:
        raise NotFound("Item not found.")
    membership = (Membership.objects.filter(project_id=item.project_id, user=user).first()
                  if user.is_authenticated else None)
    return admit_to_item(user, item, membership, admin=admin)


def access_item_to_submit(user, item_id, *, now, lock: bool) -> tuple[Item, Assignment | None, int | None]:
    """``access_item(user, item_id, lock=lock)`` with the user's assignment of the item (None without one)
    and, when known, the other raters' live leases on it (None: not counted). On PostgreSQL one statement
    reads them all (``pg.submit.item_state``); its rows are admitted by the same rule."""
    if not pg.enabled():
        item = access_item(user, item_id, lock=lock)
        return item, Assignment.objects.filter(item=item, rater=user).first(), None
    item_id = as_id(item_id)
    state = pg.submit.item_state(item_id, user.pk, now, lock=lock) if item_id is not None else None
    if state is None:
        raise NotFound("Item not found.")
    item, project, membership, assignment, others = state
    item.project = project
    return admit_to_item(user, item, membership), assignment, others


def access_own_annotation(user, annotation_id, *, lock: bool = False) -> Annotation:
    """An annotation its own rater may see and edit. Nobody else's, admins included."""
    annotation_id = as_id(annotation_id)
    qs = Annotation.objects.select_related("item", "item__project")
    if lock:
        qs = qs.select_for_update(of=("self",))
    annotation = None
    if annotation_id is not None and user.is_authenticated:
        annotation = qs.filter(pk=annotation_id, rater=user).first()
    if annotation is None:
        raise NotFound("Annotation not found.")
    return annotation
