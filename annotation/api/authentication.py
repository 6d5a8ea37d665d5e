"""Token authentication: DRF's, with the token and its user fetched by one prepared statement and
remembered for a few seconds (``PS_TOKEN_CACHE_SECONDS``)."""
from __future__ import annotations

import time
from functools import cache

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver
from django.utils.translation import gettext_lazy as _
from rest_framework import authentication, exceptions
from rest_framework.authtoken.models import Token

from annotation.rawsql import columns, fetch_one, split

User = get_user_model()

_USER_PK = [f.attname for f in User._meta.concrete_fields].index(User._meta.pk.attname)
MAX_CACHED = 10_000
# token key -> (monotonic deadline, the row of _token_sql); plain dict operations are atomic across threads
_recent: dict[str, tuple[float, tuple]] = {}


@cache
def _token_sql() -> str:
    return (f'SELECT {columns(User, "u")}, {columns(Token, "t")} FROM "{Token._meta.db_table}" t '
            f'JOIN "{User._meta.db_table}" u ON u."{User._meta.pk.column}" = t."user_id" WHERE t."key" = %s')


def _token_row(key: str) -> tuple | None:
    ttl = settings.PS_TOKEN_CACHE_SECONDS
    now = time.monotonic()
    hit = _recent.get(key)
    if hit is not None and hit[0] > now:
        return hit[1]
    row = fetch_one(_token_sql(), [key])
    if row is not None and ttl > 0:
        if len(_recent) >= MAX_CACHED:
            _recent.clear()
        _recent[key] = (now + ttl, row)
    return row


@receiver(post_delete, sender=Token)
@receiver(post_save, sender=Token)
def _forget_token(sender, instance, **kwargs):
    _recent.pop(instance.key, None)


@receiver(post_save, sender=User)
@receiver(post_delete, sender=User)
def _forget_user(sender, instance, **kwargs):
    for key, (_deadline, row) in list(_recent.items()):
        if row[_USER_PK] == instance.pk:
            _recent.pop(key, None)


class TokenAuthentication(authentication.TokenAuthentication):
    """``Authorization: Token <key>``, as DRF checks it. Every API request pays for this lookup, so on
    PostgreSQL it is one fixed statement (prepared once per connection), and a process reuses the answer
    for ``PS_TOKEN_CACHE_SECONDS``; each request still gets its own user instance."""

    def authenticate_credentials(self, key):
        if connection.vendor != "postgresql":
            return super().authenticate_credentials(key)
        row = _token_row(key)
        if row is None:
            raise exceptions.AuthenticationFailed(_("Invalid token."))
        user, token = split(row, User, Token)
        token.user = user
        if not user.is_active:
            raise exceptions.AuthenticationFailed(_("User inactive or deleted."))
        return user, token
