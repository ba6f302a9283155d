"""Reads for accounts."""

from __future__ import annotations

import uuid
from typing import Any

from django.conf import settings
from django.utils.crypto import salted_hmac
from rest_framework_simplejwt.settings import api_settings as jwt_settings
from rest_framework_simplejwt.utils import get_md5_hash_password

from accounts.models import User
from scoreboard.errors import Unauthorized

SIGNING_KEY_SALT = "scoreboard.accounts.score-signing-key"


def user_signing_key(user: User, *, secret: str | None = None) -> str:
    """The key a client uses to sign its score updates (hex HMAC-SHA256 key material).

    Derived from the server secret, the user id and a per-user version, so it is never
    stored: bumping the version rotates one user's key, rotating SECRET_KEY rotates all (pass
    each of SECRET_KEY_FALLBACKS as `secret` to accept the previous keys while clients
    refresh).
    """
    return salted_hmac(
        SIGNING_KEY_SALT,
        f"{user.pk}:{user.signing_key_version}",
        secret=secret or settings.SECRET_KEY,
        algorithm="sha256",
    ).hexdigest()


def user_for_token(claims: Any) -> User:
    """The user a verified JWT speaks for: it must exist, be active and not have changed its
    password since the token was issued (the `hash_password` claim). The client is not told
    which check failed."""
    try:
        user_id = uuid.UUID(str(claims.get(jwt_settings.USER_ID_CLAIM)))
    except ValueError:
        raise Unauthorized() from None
    user = User.objects.filter(pk=user_id).first()
    if user is None or not user.is_active:
        raise Unauthorized(security_event="jwt_user_inactive")
    if jwt_settings.CHECK_REVOKE_TOKEN and claims.get(
        jwt_settings.REVOKE_TOKEN_CLAIM
    ) != get_md5_hash_password(user.password):
        raise Unauthorized(security_event="jwt_revoked")
    return user
