"""Token authentication: DRF's, with the token and its user remembered for a few seconds
(``PS_TOKEN_CACHE_SECONDS``) by each process, whichever database answers."""
from __future__ import annotations

import time

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver
from django.utils.translation import gettext_lazy as _
from rest_framework import authentication, exceptions
from rest_framework.authtoken.models import Token

from annotation import pg
from annotation.pg.rows import split

User = get_user_model()

_USER_FIELDS = [f.attname for f in User._meta.concrete_fields]
_TOKEN_FIELDS = [f.attname for f in Token._meta.concrete_fields]
_USER_PK = _USER_FIELDS.index(User._meta.pk.attname)
MAX_CACHED = 10_000
# token key -> (monotonic deadline, the user's then the token's column values); plain dict operations are
# atomic across threads
_recent: dict[str, tuple[float, tuple]] = {}


def _token_row_orm(key: str) -> tuple | None:
    """The same row as ``pg.auth.token_row``, through the ORM."""
    return Token.objects.filter(key=key).values_list(
        *(f"user__{name}" for name in _USER_FIELDS), *_TOKEN_FIELDS).first()


def _token_row(key: str) -> tuple | None:
    ttl = settings.PS_TOKEN_CACHE_SECONDS
    now = time.monotonic()
    hit = _recent.get(key)
    if hit is not None and hit[0] > now:
        return hit[1]
    row = pg.auth.token_row(key) if pg.enabled() else _token_row_orm(key)
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
    """``Authorization: Token <key>``, as DRF checks it. Every API request pays for this lookup: it is one
    statement (prepared once per connection on PostgreSQL), and a process reuses the answer for
    ``PS_TOKEN_CACHE_SECONDS``; each request still gets its own user instance."""

    def authenticate_credentials(self, key):
        row = _token_row(key)
        if row is None:
            raise exceptions.AuthenticationFailed(_("Invalid token."))
        user, token = split(row, User, Token)
        token.user = user
        if not user.is_active:
            raise exceptions.AuthenticationFailed(_("User inactive or deleted."))
        return user, token
