"""Reads for accounts."""

from __future__ import annotations

from django.conf import settings
from django.utils.crypto import salted_hmac

from accounts.models import User

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
