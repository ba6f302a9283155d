"""Routes for the Idempotency-Key tests: a decorated write whose answer the test chooses."""

from django.db import connection
from django.db.models import F
from django.urls import include, path
from rest_framework import status
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import User
from scoreboard.idempotency import idempotent

BUMP_URL = "/api/v1/test/bump"
ANONYMOUS_URL = "/api/v1/test/anonymous"


class BumpView(APIView):
    """Bumps the caller's signing-key version, then answers with `answer_status`."""

    answer_status = status.HTTP_201_CREATED

    @idempotent
    def post(self, request: Request) -> Response:
        assert isinstance(request.user, User)
        User.objects.filter(pk=request.user.pk).update(
            signing_key_version=F("signing_key_version") + 1
        )
        return Response({"inAtomicBlock": connection.in_atomic_block}, status=self.answer_status)


class AnonymousView(APIView):
    authentication_classes = []
    permission_classes = [AllowAny]

    @idempotent
    def post(self, request: Request) -> Response:
        return Response({"ran": True})


urlpatterns = [
    path(BUMP_URL.removeprefix("/"), BumpView.as_view()),
    path(ANONYMOUS_URL.removeprefix("/"), AnonymousView.as_view()),
    path("api/v1/", include("accounts.api.urls")),
]
