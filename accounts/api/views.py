from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts import selectors, services
from accounts.api.serializers import (
    EraseInputSerializer,
    ProfileOutputSerializer,
    ProfileUpdateInputSerializer,
    RegisterInputSerializer,
    SigningKeyOutputSerializer,
    TokenInputSerializer,
    TokenPairOutputSerializer,
    TokenRefreshInputSerializer,
    UserExportSerializer,
    UserOutputSerializer,
)
from accounts.authentication import JWTAuthentication, request_user
from accounts.models import User
from accounts.schema import documented_body
from leaderboard.selectors import player_standing
from scoreboard import ratelimit
from scoreboard.api import success
from scoreboard.client_ip import client_ip
from scoreboard.idempotency import idempotent
from scoreboard.openapi import success_envelope


def _own_profile(user: User, *, from_replica: bool = False) -> dict[str, Any]:
    standing = player_standing(user, from_replica=from_replica)
    return {**UserOutputSerializer(user).data, "score": standing.score, "rank": standing.rank}


def _token_pair_data(pair: services.TokenPair) -> dict[str, Any]:
    return {
        "accessToken": pair.access,
        "refreshToken": pair.refresh,
        "tokenType": "Bearer",
        "expiresIn": pair.expires_in,
        "signingKey": pair.signing_key,
        "user": UserOutputSerializer(pair.user).data,
    }


class PublicAuthView(APIView):
    """Credential endpoints: no JWT needed, rate-limited per client address."""

    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        identity = ratelimit.ip_identity(client_ip(request))
        ratelimit.enforce(request, [(ratelimit.auth_limit(), identity)], fail_closed=True)

    def get_authenticate_header(self, request: Request) -> str:
        # Without one, DRF turns the 401 of a wrong password into a 403.
        return JWTAuthentication().authenticate_header(request)


class RegisterView(PublicAuthView):
    @extend_schema(
        operation_id="auth_register",
        request=RegisterInputSerializer,
        responses={201: success_envelope(UserOutputSerializer(), name="RegisterResponse")},
    )
    def post(self, request: Request) -> Response:
        serializer = RegisterInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        user = services.user_register(**serializer.validated_data)
        return success(
            UserOutputSerializer(user).data,
            message="Account created",
            status_code=status.HTTP_201_CREATED,
        )


class TokenObtainView(PublicAuthView):
    @extend_schema(
        operation_id="auth_token",
        request=TokenInputSerializer,
        responses={200: success_envelope(TokenPairOutputSerializer(), name="TokenPairResponse")},
    )
    def post(self, request: Request) -> Response:
        serializer = TokenInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        pair = services.token_pair_for_credentials(
            username=serializer.validated_data["username"],
            password=serializer.validated_data["password"],
            request=request._request,
        )
        return success(_token_pair_data(pair))


class TokenRefreshView(PublicAuthView):
    @extend_schema(
        operation_id="auth_token_refresh",
        request=TokenRefreshInputSerializer,
        responses={200: success_envelope(TokenPairOutputSerializer(), name="TokenRefreshResponse")},
    )
    def post(self, request: Request) -> Response:
        serializer = TokenRefreshInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        pair = services.token_pair_refresh(refresh_token=serializer.validated_data["refreshToken"])
        return success(_token_pair_data(pair))


class MeView(APIView):
    @extend_schema(
        operation_id="users_me",
        responses={200: success_envelope(ProfileOutputSerializer(), name="ProfileResponse")},
    )
    def get(self, request: Request) -> Response:
        return success(_own_profile(request_user(request), from_replica=True))

    @extend_schema(
        operation_id="users_me_update",
        request=ProfileUpdateInputSerializer,
        responses={200: success_envelope(ProfileOutputSerializer(), name="ProfileUpdateResponse")},
    )
    def patch(self, request: Request) -> Response:
        serializer = ProfileUpdateInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        user = services.user_update_profile(
            user=request_user(request),
            country=data.get("country"),
            avatar=data.get("avatar"),
            hide_from_leaderboards=data.get("hideFromLeaderboards"),
        )
        return success(_own_profile(user))

    @extend_schema(
        operation_id="users_me_erase",
        request=EraseInputSerializer,
        responses={204: None},
        description=(
            "Erase the caller's account (docs/privacy.md): personal data removed, boards "
            "updated, every token revoked, the audit log kept anonymised. A wrong password is "
            "401 UNAUTHORIZED and changes nothing. Counted with `auth/*` against "
            "SCOREBOARD_AUTH_RATE per client address."
        ),
    )
    @documented_body
    def delete(self, request: Request) -> Response:
        identity = ratelimit.ip_identity(client_ip(request))
        ratelimit.enforce(request, [(ratelimit.auth_limit(), identity)], fail_closed=True)
        serializer = EraseInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        services.user_erase(
            user=request_user(request), password=serializer.validated_data["password"]
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


class UserExportView(APIView):
    @extend_schema(
        operation_id="users_me_export",
        responses={200: success_envelope(UserExportSerializer(), name="UserExportResponse")},
        description="Everything held about the caller, in one document (docs/privacy.md).",
    )
    def get(self, request: Request) -> Response:
        export = selectors.user_export(user=request_user(request))
        return success(UserExportSerializer(export).data)


class SigningKeyRotateView(APIView):
    @extend_schema(
        operation_id="users_me_signing_key_rotate",
        request=None,
        responses={200: success_envelope(SigningKeyOutputSerializer(), name="SigningKeyResponse")},
    )
    @idempotent
    def post(self, request: Request) -> Response:
        signing_key = services.user_rotate_signing_key(user=request_user(request))
        return success({"signingKey": signing_key}, message="Signing key rotated")
