"""Reads for accounts."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.utils import timezone
from django.utils.crypto import salted_hmac
from rest_framework_simplejwt.settings import api_settings as jwt_settings
from rest_framework_simplejwt.token_blacklist.models import OutstandingToken
from rest_framework_simplejwt.utils import get_md5_hash_password

from accounts.models import User
from scoreboard.errors import Unauthorized
from scoring.models import ActionToken, ModerationDecision, ScoreTotal, ScoreUpdate
from scoring.selectors import (
    action_tokens_for_user,
    moderation_decisions_about_user,
    moderation_decisions_by_user,
    score_totals_for_user,
    score_updates_for_user,
)

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
    user_id = _claimed_user_id(claims)
    if user_id is None:
        raise Unauthorized()
    user = User.objects.filter(pk=user_id).first()
    refusal = _token_refusal(claims, user)
    if refusal is not None or user is None:
        raise Unauthorized(security_event=refusal)
    return user


CLAIMS_CHECKED_PER_QUERY = 1000


def tokens_refused(many_claims: list[Any]) -> list[bool]:
    """For many verified JWTs at once, whether each one's user fails `user_for_token`'s
    checks: one query per thousand tokens instead of one each."""
    user_ids = [_claimed_user_id(claims) for claims in many_claims]
    wanted = sorted({user_id for user_id in user_ids if user_id is not None})
    users: dict[uuid.UUID, User] = {}
    for start in range(0, len(wanted), CLAIMS_CHECKED_PER_QUERY):
        chunk = wanted[start : start + CLAIMS_CHECKED_PER_QUERY]
        users.update(
            (user.pk, user)
            for user in User.objects.filter(pk__in=chunk).only("id", "is_active", "password")
        )
    return [
        user_id is None or _token_refusal(claims, users.get(user_id)) is not None
        for claims, user_id in zip(many_claims, user_ids, strict=True)
    ]


def _claimed_user_id(claims: Any) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(claims.get(jwt_settings.USER_ID_CLAIM)))
    except ValueError:
        return None


def _token_refusal(claims: Any, user: User | None) -> str | None:
    """Why the token's user may not act (the security event to log), or None."""
    if user is None or not user.is_active:
        return "jwt_user_inactive"
    if jwt_settings.CHECK_REVOKE_TOKEN and claims.get(
        jwt_settings.REVOKE_TOKEN_CLAIM
    ) != get_md5_hash_password(user.password):
        return "jwt_revoked"
    return None


# Bumped whenever the export's shape changes in a way a reader would notice.
EXPORT_FORMAT_VERSION = 1


@dataclass(frozen=True)
class RefreshTokenRecord:
    """What is kept about one refresh token, minus the token itself."""

    jti: str
    created_at: datetime | None
    expires_at: datetime
    blacklisted_at: datetime | None


@dataclass(frozen=True)
class UserExport:
    """Everything held about one user (GDPR art. 15 and 20), as `users/me/export` shows it."""

    format_version: int
    exported_at: datetime
    user: User
    groups: list[str]
    permissions: list[str]
    score_updates: list[ScoreUpdate]
    totals: list[ScoreTotal]
    action_tokens: list[ActionToken]
    refresh_tokens: list[RefreshTokenRecord]
    moderation_decisions: list[ModerationDecision]
    moderation_decisions_taken: list[ModerationDecision]


def user_export(*, user: User) -> UserExport:
    """Gather everything held about `user`, a fixed number of queries whatever its size.

    Left out: the password hash, the signing key (derived, never stored; its version is
    in), refresh tokens' text, action tokens' hashes, and who the moderators were that
    decided about the user: their identity is theirs (docs/privacy.md).
    """
    refresh_tokens = [
        RefreshTokenRecord(
            jti=jti, created_at=created_at, expires_at=expires_at, blacklisted_at=blacklisted_at
        )
        for jti, created_at, expires_at, blacklisted_at in OutstandingToken.objects.filter(
            user=user
        )
        .order_by("-created_at", "-id")
        .values_list("jti", "created_at", "expires_at", "blacklistedtoken__blacklisted_at")
    ]
    return UserExport(
        format_version=EXPORT_FORMAT_VERSION,
        exported_at=timezone.now(),
        user=user,
        groups=sorted(user.groups.values_list("name", flat=True)),
        permissions=sorted(
            f"{app_label}.{codename}"
            for app_label, codename in user.user_permissions.values_list(
                "content_type__app_label", "codename"
            )
        ),
        score_updates=list(score_updates_for_user(user_id=user.pk)),
        totals=list(score_totals_for_user(user_id=user.pk)),
        action_tokens=list(action_tokens_for_user(user_id=user.pk)),
        refresh_tokens=refresh_tokens,
        moderation_decisions=list(moderation_decisions_about_user(user_id=user.pk)),
        moderation_decisions_taken=list(moderation_decisions_by_user(user_id=user.pk)),
    )
