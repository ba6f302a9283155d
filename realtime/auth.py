"""Who a live connection speaks for (DESIGN.md §5): a single-use ticket, the access JWT in an
`Authorization: Bearer` header (native clients, the event stream) or as the `bearer`
subprotocol, or `?token=` where settings allow it.

A connection keeps the claims it was opened with; `recheck` runs the same checks as the API
(user exists and is active, password unchanged since the token), and `recheck_many` runs them
for every connection of a process at each heartbeat; the connection ends when the token would
have expired.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from django.conf import settings
from django.core.cache import cache
from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.settings import api_settings as jwt_settings
from rest_framework_simplejwt.tokens import AccessToken

from accounts.selectors import tokens_refused, user_for_token
from scoreboard.client_ip import scope_client_ip
from scoreboard.errors import Unauthorized
from scoreboard.security_events import security_event

TICKET_SECONDS = 30
BEARER_SUBPROTOCOL = "bearer"


class CredentialRefused(Exception):
    """No usable credential: the connection is closed with 4401."""


@dataclass(frozen=True)
class Ticket:
    ticket: str
    expires_in: int


@dataclass(frozen=True)
class LiveIdentity:
    # The claims that decide whether the user may still listen (subject, password digest).
    claims: dict[str, Any]
    # Unix time the access token behind the connection expires.
    expires_at: float
    # The subprotocol the server must answer with, if the client offered one.
    subprotocol: str | None


def _ticket_key(ticket: str) -> str:
    return "live-ticket:" + hashlib.sha256(ticket.encode()).hexdigest()


def ticket_issue(*, claims: dict[str, Any]) -> Ticket:
    """A single-use ticket standing for the access token's claims for TICKET_SECONDS. Only
    its digest is stored."""
    ticket = secrets.token_urlsafe(32)
    kept = {
        name: claims.get(name)
        for name in (jwt_settings.USER_ID_CLAIM, jwt_settings.REVOKE_TOKEN_CLAIM, "exp")
    }
    cache.set(_ticket_key(ticket), kept, timeout=TICKET_SECONDS)
    return Ticket(ticket=ticket, expires_in=TICKET_SECONDS)


def ticket_redeem(ticket: str) -> dict[str, Any] | None:
    """The claims of a valid ticket, once: of concurrent redeemers only the one whose delete
    removed the key gets them."""
    key = _ticket_key(ticket)
    claims = cache.get(key)
    if claims is None or not cache.delete(key):
        return None
    return dict(claims)


def _credential(scope: Mapping[str, Any]) -> tuple[str, str, str | None]:
    """(kind, value, subprotocol) of the credential the client presented."""
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    subprotocols = list(scope.get("subprotocols") or [])
    offered = BEARER_SUBPROTOCOL if BEARER_SUBPROTOCOL in subprotocols else None
    tickets = query.get("ticket", [])
    if len(tickets) == 1:
        return "ticket", tickets[0], offered
    authorization = dict(scope.get("headers") or []).get(b"authorization", b"").decode("latin-1")
    if authorization.startswith("Bearer "):
        return "jwt", authorization.removeprefix("Bearer ").strip(), offered
    if len(subprotocols) == 2 and subprotocols[0] == BEARER_SUBPROTOCOL:
        return "jwt", subprotocols[1], offered
    tokens = query.get("token", [])
    if len(tokens) == 1 and settings.SCOREBOARD_WS_ALLOW_QUERY_TOKEN:
        return "jwt", tokens[0], offered
    return "none", "", offered


def offered_subprotocol(scope: Mapping[str, Any]) -> str | None:
    return _credential(scope)[2]


def authenticate_connection(scope: Mapping[str, Any]) -> LiveIdentity:
    """The identity behind a new connection; CredentialRefused when there is none."""
    kind, value, subprotocol = _credential(scope)
    try:
        if kind == "ticket":
            claims = ticket_redeem(value)
            if claims is None:
                raise CredentialRefused("unknown, used or expired ticket")
        elif kind == "jwt":
            try:
                claims = dict(AccessToken(value).payload)  # type: ignore[arg-type]
            except TokenError:
                raise CredentialRefused("invalid or expired token") from None
        else:
            raise CredentialRefused("no credential")
        recheck(claims)
    except CredentialRefused as refused:
        security_event(
            "live_credential_refused",
            str(refused),
            credential=kind,
            path=scope.get("path"),
            client_ip=scope_client_ip(scope),
        )
        raise
    return LiveIdentity(claims=claims, expires_at=float(claims["exp"]), subprotocol=subprotocol)


def recheck(claims: dict[str, Any]) -> None:
    """Raise CredentialRefused unless the user may still listen."""
    try:
        user_for_token(claims)
    except Unauthorized:
        raise CredentialRefused("user inactive, gone or password changed") from None


def recheck_many(many_claims: list[dict[str, Any]]) -> list[bool]:
    """`recheck` for many connections at once (one query): True where the user may no
    longer listen."""
    return tokens_refused(many_claims)
