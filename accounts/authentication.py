"""JWT authentication whose failures carry the envelope's codes (TOKEN_EXPIRED vs UNAUTHORIZED).

simplejwt already verifies the signature with the one configured algorithm (so `alg: none` and
algorithm confusion fail), the expiry, the issuer and the audience; the user must still exist,
be active and not have changed their password since the token was issued.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict

from rest_framework.exceptions import NotAuthenticated
from rest_framework.request import Request
from rest_framework_simplejwt import authentication
from rest_framework_simplejwt.exceptions import ExpiredTokenError, TokenError
from rest_framework_simplejwt.tokens import AccessToken, Token

from accounts.models import User
from accounts.selectors import user_for_token
from scoreboard.errors import TokenExpired, Unauthorized

VERIFIED_TOKENS_KEPT = 10_000


class VerifiedTokens:
    """Access tokens this process has verified, each kept until it expires: a client sends
    the same token with every request for its whole lifetime, and checking its signature
    and claims again each time is pure cost. Only the verification is kept; the user is
    still read for every request, so a ban or a password change takes effect at once."""

    def __init__(self, size: int = VERIFIED_TOKENS_KEPT) -> None:
        self.size = size
        self._tokens: OrderedDict[bytes, tuple[float, AccessToken]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, raw_token: bytes) -> AccessToken:
        now = time.time()
        with self._lock:
            kept = self._tokens.get(raw_token)
            if kept is not None and kept[0] > now:
                self._tokens.move_to_end(raw_token)
                return kept[1]
        token = AccessToken(raw_token)  # type: ignore[arg-type]
        with self._lock:
            self._tokens[raw_token] = (float(token["exp"]), token)
            self._tokens.move_to_end(raw_token)
            while len(self._tokens) > self.size:
                self._tokens.popitem(last=False)
        return token


verified_tokens = VerifiedTokens()


class JWTAuthentication(authentication.JWTAuthentication):
    def get_validated_token(self, raw_token: bytes) -> Token:
        try:
            return verified_tokens.get(raw_token)
        except ExpiredTokenError:
            raise TokenExpired() from None
        except TokenError:
            raise Unauthorized(
                "Invalid authentication token.", security_event="jwt_invalid"
            ) from None

    def get_user(self, validated_token: Token) -> User:  # type: ignore[override]
        return user_for_token(validated_token)


def request_user(request: Request) -> User:
    """The authenticated player of an API request (views behind IsAuthenticated)."""
    if not isinstance(request.user, User):
        raise NotAuthenticated()
    return request.user
