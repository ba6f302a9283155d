"""Assertions and token builders shared by the accounts tests."""

from __future__ import annotations

import re
from typing import Any

import jwt
from django.conf import settings

REGISTER_URL = "/api/v1/auth/register"
TOKEN_URL = "/api/v1/auth/token"
REFRESH_URL = "/api/v1/auth/token/refresh"
ME_URL = "/api/v1/users/me"
ROTATE_URL = "/api/v1/users/me/signing-key/rotate"

HEX_KEY = re.compile(r"^[0-9a-f]{64}\Z")
_UTC_TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z\Z")
# Sentinel for `signed_jwt`: drop the claim instead of setting it.
DROP = object()


class UtcTimestamp:
    """Equal to any ISO 8601 UTC timestamp string ending in `Z`."""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, str) and bool(_UTC_TIMESTAMP.match(other))

    def __repr__(self) -> str:
        return "<ISO 8601 UTC timestamp>"


def assert_error(
    response: Any,
    *,
    status_code: int,
    code: str,
    message: str,
    details: Any = None,
    retry_after: int | None = None,
) -> None:
    """The response is exactly the error envelope, and its requestId is the X-Request-ID."""
    assert response.status_code == status_code, response.content
    error: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        error["details"] = details
    if retry_after is not None:
        error["retryAfter"] = retry_after
    error["timestamp"] = UtcTimestamp()
    error["requestId"] = response["X-Request-ID"]
    body = response.json()
    assert body == {"success": False, "error": error}, body


def assert_invalid(response: Any, details: dict[str, list[str]]) -> None:
    """A 400 INVALID_INPUT whose message names the first field error in `details`."""
    field, messages = next(iter(details.items()))
    assert_error(
        response,
        status_code=400,
        code="INVALID_INPUT",
        message=f"{field}: {messages[0]}",
        details=details,
    )


def iso(value: Any) -> str:
    """A datetime as DRF renders it."""
    return value.isoformat().replace("+00:00", "Z")


def profile(user: Any) -> dict[str, Any]:
    """The public profile of a user, as the API renders it, from the database row."""
    user.refresh_from_db()
    return {
        "id": str(user.pk),
        "username": user.username,
        "email": user.email,
        "country": user.country,
        "avatar": user.avatar,
        "role": user.role,
        "hideFromLeaderboards": user.hide_from_leaderboards,
        "createdAt": iso(user.created_at),
        "lastActive": iso(user.last_active_at),
    }


def jwt_settings() -> dict[str, Any]:
    return settings.SIMPLE_JWT


def decode_jwt(token: str) -> dict[str, Any]:
    """Verify and decode a token the way a resource server holding the key would."""
    config = jwt_settings()
    return jwt.decode(
        token,
        config["SIGNING_KEY"],
        algorithms=[config["ALGORITHM"]],
        audience=config["AUDIENCE"],
        issuer=config["ISSUER"],
    )


def signed_jwt(
    claims: dict[str, Any],
    *,
    key: str | None = None,
    algorithm: str | None = None,
    **changes: Any,
) -> str:
    """Re-sign `claims` with `changes` applied (a `DROP` value removes the claim).

    By default the token is signed with the server's real key and algorithm, so only the
    changed claims make it invalid.
    """
    config = jwt_settings()
    payload = dict(claims)
    for name, value in changes.items():
        if value is DROP:
            payload.pop(name, None)
        else:
            payload[name] = value
    return jwt.encode(
        payload,
        config["SIGNING_KEY"] if key is None else key,
        algorithm=algorithm or config["ALGORITHM"],
    )
