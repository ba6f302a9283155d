"""Routes that fail on purpose, for the tests of the error envelope."""

from django.http import HttpRequest, HttpResponse
from django.urls import include, path
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

LEAKED_DETAIL = "db password is hunter2"


class CrashingApiView(APIView):
    authentication_classes = []
    permission_classes = [AllowAny]

    def get(self, request: Request) -> Response:
        raise RuntimeError(LEAKED_DETAIL)


class ForbiddenApiView(APIView):
    authentication_classes = []
    permission_classes = [AllowAny]

    def get(self, request: Request) -> Response:
        from rest_framework.exceptions import PermissionDenied

        raise PermissionDenied("Moderators only.")


def crashing_django_view(request: HttpRequest) -> HttpResponse:
    raise RuntimeError(LEAKED_DETAIL)


urlpatterns = [
    path("api/v1/crash", CrashingApiView.as_view()),
    path("api/v1/forbidden", ForbiddenApiView.as_view()),
    path("api/v1/plain-crash", crashing_django_view),
    path("", include("scoreboard.urls")),
]
