"""Who may touch what. One helper per object a user reaches; the only place that decides.

Anything a user may not see is reported as not found, so ids of other projects leak nothing.
Members who may see a thing but not change it get Forbidden.
"""
from __future__ import annotations

from functools import cache

from django.db import connection

from .errors import Forbidden, NotFound
from .models import Annotation, Item, Membership, Project
from .rawsql import columns, fetch_one, split


def is_admin(user) -> bool:
    return bool(user and user.is_authenticated and user.is_active and user.is_staff)


def is_member(user, project: Project) -> bool:
    return Membership.objects.filter(project=project, user=user).exists()


def _access_project(user, lookup: dict, *, admin: bool) -> Project:
    if is_admin(user):
        project = Project.objects.filter(**lookup).first()
        if project is None:
            raise NotFound("Project not found.")
        project.membership = Membership.objects.filter(project=project, user=user).first()
        return project
    if not (user and user.is_authenticated):
        raise NotFound("Project not found.")
    membership = _membership_with_project(user, lookup)
    if membership is None:
        raise NotFound("Project not found.")
    if admin:
        raise Forbidden("Only admins can do this.")
    project = membership.project
    project.membership = membership
    return project


@cache
def _membership_sql(column: str) -> str:
    return (f'SELECT {columns(Membership, "m")}, {columns(Project, "p")} FROM "{Membership._meta.db_table}" m '
            f'JOIN "{Project._meta.db_table}" p ON p.id = m.project_id WHERE m.user_id = %s AND p."{column}" = %s')


def _membership_with_project(user, lookup: dict) -> Membership | None:
    """The user's membership of the project, with the project. Every rater request starts here, so on
    PostgreSQL it is one fixed statement (prepared once per connection) rather than an ORM query."""
    ((field, value),) = lookup.items()
    if connection.vendor != "postgresql":
        member_lookup = {f"project__{field}": value}
        return Membership.objects.select_related("project").filter(user=user, **member_lookup).first()
    row = fetch_one(_membership_sql("id" if field == "pk" else field), [user.pk, value])
    if row is None:
        return None
    membership, project = split(row, Membership, Project)
    membership.project = project
    return membership


def access_project(user, project_id, *, admin: bool = False) -> Project:
    """The project if ``user`` may see it (members and admins); with ``admin=True`` admins only.

    The user's membership (None for an admin who is not a member) is fetched with it and kept as
    ``project.membership``.
    """
    try:
        project_id = int(project_id)
    except (TypeError, ValueError):
        raise NotFound("Project not found.")
    return _access_project(user, {"pk": project_id}, admin=admin)


def access_project_by_slug(user, slug: str, *, admin: bool = False) -> Project:
    """Like ``access_project``, by slug."""
    return _access_project(user, {"slug": slug}, admin=admin)


def access_item(user, item_id, *, lock: bool = False) -> Item:
    """The item if ``user`` is an admin or a member of its project; ``lock`` takes its row lock.

    The user's membership of the item's project (None for admins without one) is kept as
    ``item.membership``.
    """
    qs = Item.objects.select_related("project")
    if lock:
        qs = qs.select_for_update(of=("self",))
    try:
        item = qs.get(pk=int(item_id))
    except (Item.DoesNotExist, TypeError, ValueError):
        raise NotFound("Item not found.")
    item.membership = (
        Membership.objects.filter(project_id=item.project_id, user=user).first() if user.is_authenticated else None
    )
    if item.membership is None and not is_admin(user):
        raise NotFound("Item not found.")
    return item


def access_own_annotation(user, annotation_id, *, lock: bool = False) -> Annotation:
    """An annotation its own rater may see and edit. Nobody else's, admins included."""
    qs = Annotation.objects.select_related("item", "item__project")
    if lock:
        qs = qs.select_for_update(of=("self",))
    try:
        annotation = qs.get(pk=int(annotation_id), rater=user)
    except (Annotation.DoesNotExist, TypeError, ValueError):
        raise NotFound("Annotation not found.")
    return annotation
