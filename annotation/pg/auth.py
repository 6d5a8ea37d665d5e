"""Who is asking: a rater's membership of a project with the project, and an API token with its user.

Every rater request starts with these, so each is one fixed statement, prepared once per connection.
The ORM's references: ``annotation.access._membership_with_project`` and
``annotation.api.authentication._token_row``.
"""
from __future__ import annotations

from functools import cache

from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token

from ..models import Membership, Project
from .rows import columns, fetch_one, split


@cache
def _membership_sql(column: str) -> str:
    return (f'SELECT {columns(Membership, "m")}, {columns(Project, "p")} FROM "{Membership._meta.db_table}" m '
            f'JOIN "{Project._meta.db_table}" p ON p.id = m.project_id WHERE m.user_id = %s AND p."{column}" = %s')


def membership_with_project(user_id: int, column: str, value) -> Membership | None:
    """The user's membership of the project whose ``column`` ("id" or "slug") is ``value``, with its project."""
    row = fetch_one(_membership_sql(column), [user_id, value])
    if row is None:
        return None
    membership, project = split(row, Membership, Project)
    membership.project = project
    return membership


@cache
def _token_sql() -> str:
    user = get_user_model()
    return (f'SELECT {columns(user, "u")}, {columns(Token, "t")} FROM "{Token._meta.db_table}" t '
            f'JOIN "{user._meta.db_table}" u ON u."{user._meta.pk.column}" = t."user_id" WHERE t."key" = %s')


def token_row(key: str) -> tuple | None:
    """The user's columns, then the token's, of the token ``key`` (``rows.split(row, User, Token)``)."""
    return fetch_one(_token_sql(), [key])
