"""JWT authentication whose failures carry the envelope's codes (TOKEN_EXPIRED vs UNAUTHORIZED).

simplejwt already verifies the signature with the one configured algorithm (so `alg: none` and
algorithm confusion fail), the expiry, the issuer and the audience; the user must still exist,
be active and not have changed their password since the token was issued.
"""

from __future__ import annotations

from rest_framework.exceptions import NotAuthenticated
from rest_framework.request import Request
from rest_framework_simplejwt import authentication
from rest_framework_simplejwt.exceptions import ExpiredTokenError, TokenError
from rest_framework_simplejwt.tokens import AccessToken, Token

from accounts.models import User
from accounts.selectors import user_for_token
from scoreboard.errors import TokenExpired, Unauthorized


class JWTAuthentication(authentication.JWTAuthentication):
    def get_validated_token(self, raw_token: bytes) -> Token:
        try:
            return AccessToken(raw_token)  # type: ignore[arg-type]
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
