"""Writes for accounts: registration, profile changes, JWT pairs, signing-key rotation, and
erasure at the player's request (docs/privacy.md)."""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.contrib.auth import authenticate
from django.contrib.auth.models import Group
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import F
from django.http import HttpRequest
from django.utils import timezone
from rest_framework_simplejwt.exceptions import ExpiredTokenError, TokenBackendError, TokenError
from rest_framework_simplejwt.settings import api_settings as jwt_settings
from rest_framework_simplejwt.state import token_backend
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken
from rest_framework_simplejwt.tokens import AccessToken, RefreshToken

from accounts.models import MODERATORS_GROUP, Role, User
from accounts.selectors import user_for_token, user_signing_key
from leaderboard.services import snapshots_forget_user
from scoreboard.batches import delete_in_batches
from scoreboard.errors import NON_FIELD_ERRORS, InvalidInput, TokenExpired, Unauthorized
from scoreboard.idempotency import records_forget_user
from scoring.privacy import user_scoring_anonymise

logger = logging.getLogger(__name__)

ROLE_PERMISSIONS: dict[str, tuple[str, ...]] = {
    Role.USER: ("score.update", "leaderboard.view"),
    Role.MODERATOR: ("score.update", "leaderboard.view", "moderation.review"),
    Role.ADMIN: ("score.update", "leaderboard.view", "moderation.review", "users.manage"),
}


@dataclass(frozen=True)
class TokenPair:
    access: str
    refresh: str
    expires_in: int
    signing_key: str
    user: User


def _invalid_from_validation_error(error: ValidationError) -> InvalidInput:
    if hasattr(error, "error_dict"):
        return InvalidInput.for_fields(
            {field: list(messages) for field, messages in error.message_dict.items()}
        )
    return InvalidInput.for_fields({NON_FIELD_ERRORS: list(error.messages)})


def _normalized_country(country: str) -> str:
    """Upper-case ASCII codes only: Unicode case mapping turns some non-codes into codes."""
    return country.upper() if country.isascii() else country


def _check_unique(*, username: str | None = None, email: str | None = None) -> None:
    taken: dict[str, list[str]] = {}
    if username is not None and User.objects.filter(username__iexact=username).exists():
        taken["username"] = ["A user with that username already exists."]
    if email is not None and User.objects.filter(email__iexact=email).exists():
        taken["email"] = ["A user with that email already exists."]
    if taken:
        raise InvalidInput.for_fields(taken)


def user_register(
    *, username: str, email: str, password: str, country: str = "", avatar: str = ""
) -> User:
    """Create a player. Usernames and emails are unique case-insensitively; the password must
    pass Django's validators (length, common, numeric, similarity to the username/email)."""
    user = User(
        username=User.normalize_username(username),
        email=User.objects.normalize_email(email),
        country=_normalized_country(country),
        avatar=avatar,
    )
    try:
        user.full_clean(exclude=["password"], validate_unique=False, validate_constraints=False)
    except ValidationError as error:
        raise _invalid_from_validation_error(error) from None
    try:
        validate_password(password, user)
    except ValidationError as error:
        raise InvalidInput.for_fields({"password": list(error.messages)}) from None
    _check_unique(username=user.username, email=user.email)
    user.set_password(password)
    try:
        with transaction.atomic():
            user.save(force_insert=True)
    except IntegrityError:
        # Lost a race with a concurrent registration of the same name or email.
        _check_unique(username=user.username, email=user.email)
        raise
    return user


def user_update_profile(
    *,
    user: User,
    country: str | None = None,
    avatar: str | None = None,
    hide_from_leaderboards: bool | None = None,
) -> User:
    changes: dict[str, Any] = {}
    if country is not None:
        changes["country"] = _normalized_country(country)
    if avatar is not None:
        changes["avatar"] = avatar
    if hide_from_leaderboards is not None:
        changes["hide_from_leaderboards"] = hide_from_leaderboards
    if not changes:
        return user
    for field, value in changes.items():
        setattr(user, field, value)
    try:
        user.full_clean(
            exclude=[field.name for field in User._meta.fields if field.name not in changes],
            validate_unique=False,
            validate_constraints=False,
        )
    except ValidationError as error:
        user.refresh_from_db(fields=list(changes))
        raise _invalid_from_validation_error(error) from None
    user.save(update_fields=list(changes))
    return user


def user_role_groups_sync(*, user: User) -> None:
    """Put a moderator in the Moderators group and take anyone else out of it: the role is
    the one place that says who moderates (the group only carries the permissions). Called
    after every save that may have changed the role, and after the user admin saved the
    groups from its form, which would otherwise overwrite the membership."""
    group = Group.objects.filter(name=MODERATORS_GROUP).first()
    if group is None:
        logger.error("The %s group is missing: run `manage.py migrate`.", MODERATORS_GROUP)
        return
    if user.role == Role.MODERATOR:
        user.groups.add(group)
    else:
        user.groups.remove(group)


def user_rotate_signing_key(*, user: User) -> str:
    """Invalidate the user's current score-signing key and return the new one."""
    User.objects.filter(pk=user.pk).update(signing_key_version=F("signing_key_version") + 1)
    user.refresh_from_db(fields=["signing_key_version"])
    return user_signing_key(user)


def _access_token_for(user: User) -> AccessToken:
    access = AccessToken.for_user(user)
    access["username"] = user.username
    access["email"] = user.email
    access["role"] = user.role
    access["permissions"] = list(ROLE_PERMISSIONS[user.role])
    return access


def _issue_pair(user: User) -> TokenPair:
    refresh = RefreshToken.for_user(user)  # recorded as outstanding, so it can be revoked
    access = _access_token_for(user)
    user.last_active_at = timezone.now()
    User.objects.filter(pk=user.pk).update(last_active_at=user.last_active_at)
    return TokenPair(
        access=str(access),
        refresh=str(refresh),
        expires_in=int(jwt_settings.ACCESS_TOKEN_LIFETIME.total_seconds()),
        signing_key=user_signing_key(user),
        user=user,
    )


def token_pair_for_credentials(
    *, username: str, password: str, request: HttpRequest | None = None
) -> TokenPair:
    user = authenticate(request, username=username, password=password)
    if not isinstance(user, User) or not user.is_active:
        raise Unauthorized("Invalid username or password.", security_event="login_failed")
    return _issue_pair(user)


def _refused_refresh_event(refresh_token: str) -> str:
    """Tells a replayed refresh token (genuine, but already exchanged) from a forged one."""
    try:
        payload = token_backend.decode(refresh_token)  # type: ignore[arg-type]
    except TokenBackendError:
        return "jwt_invalid"
    jti = payload.get(jwt_settings.JTI_CLAIM)
    replayed = BlacklistedToken.objects.filter(token__jti=jti).exists()
    return "refresh_token_reuse" if replayed else "jwt_invalid"


def token_pair_refresh(*, refresh_token: str) -> TokenPair:
    """Exchange a refresh token for a new pair. The old refresh token is revoked; a second
    use of it (a replay, or a race of two refreshes) is refused."""
    try:
        refresh = RefreshToken(refresh_token)  # type: ignore[arg-type]
    except ExpiredTokenError:
        raise TokenExpired("The refresh token has expired.") from None
    except TokenError:
        raise Unauthorized(
            "Invalid or revoked refresh token.",
            security_event=_refused_refresh_event(refresh_token),
        ) from None

    user = user_for_token(refresh)
    with transaction.atomic():
        outstanding = (
            OutstandingToken.objects.select_for_update().filter(jti=refresh["jti"]).first()
        )
        if outstanding is None:
            raise Unauthorized("Invalid or revoked refresh token.")
        _, created = BlacklistedToken.objects.get_or_create(token=outstanding)
        if not created:
            raise Unauthorized(
                "Invalid or revoked refresh token.", security_event="refresh_token_reuse"
            )
    return _issue_pair(user)


# --- erasure and retention (docs/privacy.md) ------------------------------------------------

ERASED_USERNAME_PREFIX = "erased-"
# A reserved top-level domain (RFC 2606): nothing is ever delivered there.
ERASED_EMAIL_DOMAIN = "erased.invalid"


def user_erase(*, user: User, password: str) -> None:
    """Erase the player's account at their request (GDPR art. 17), in one transaction.

    Personal data goes: username and email become unique placeholders (the old ones are free
    to register again), avatar and country are blanked, the password becomes unusable and
    the signing key is destroyed (its version moves on, and no token will carry a key again).
    The account is deactivated, hidden, stripped of its role, groups and permissions, and
    marked erased. Its totals stay in the database, excluded like any inactive player's; the
    accounts signal re-syncs the board index and republishes the live channels after commit.
    Refresh tokens are blacklisted; access tokens die with the password (CHECK_REVOKE_TOKEN)
    and the inactive flag. The score pipeline keeps the audit log without network details
    and invalidates unspent action tokens; archived standings and stored idempotent answers
    forget the player.

    The password is checked before the transaction: hashing takes a while, and a SQLite
    transaction locks the whole database.
    """
    if not user.check_password(password):
        raise Unauthorized("The password is not correct.", security_event="erase_password_rejected")
    with transaction.atomic():
        version = (
            User.objects.select_for_update()
            .filter(pk=user.pk, erased_at__isnull=True, password=user.password)
            .values_list("signing_key_version", flat=True)
            .first()
        )
        if version is None:  # erased, or the password changed, since the check
            raise Unauthorized()
        user.username = f"{ERASED_USERNAME_PREFIX}{secrets.token_hex(12)}"
        user.email = f"{user.username}@{ERASED_EMAIL_DOMAIN}"
        user.avatar = ""
        user.country = ""
        user.set_unusable_password()
        user.signing_key_version = version + 1
        user.role = Role.USER
        user.is_active = False
        user.hide_from_leaderboards = True
        user.erased_at = timezone.now()
        user.save(
            update_fields=[
                "username",
                "email",
                "avatar",
                "country",
                "password",
                "signing_key_version",
                "role",
                "is_active",
                "hide_from_leaderboards",
                "erased_at",
            ]
        )
        user.groups.clear()
        user.user_permissions.clear()
        _refresh_tokens_revoke(user=user)
        user_scoring_anonymise(user_id=user.pk)
        snapshots_forget_user(user_id=user.pk)
        records_forget_user(user_id=user.pk)
    logger.info("Account %s erased at its owner's request.", user.pk)


def _refresh_tokens_revoke(*, user: User) -> None:
    """Blacklist every refresh token of the user not blacklisted yet."""
    open_tokens = OutstandingToken.objects.filter(user=user, blacklistedtoken__isnull=True)
    BlacklistedToken.objects.bulk_create(
        [BlacklistedToken(token_id=pk) for pk in open_tokens.values_list("pk", flat=True)],
        ignore_conflicts=True,  # a refresh racing with the erasure blacklisted it first
    )


def refresh_tokens_prune(*, now: datetime, batch_size: int = 1000, dry_run: bool = False) -> int:
    """Delete the refresh tokens that expired before `now`, with their blacklist entries:
    they can never be used again, so nothing needs to remember them (simplejwt's
    `flushexpiredtokens`, in batches). Returns how many."""
    expired = OutstandingToken.objects.filter(expires_at__lt=now)
    if dry_run:
        return expired.count()
    return delete_in_batches(expired, batch_size=batch_size)
