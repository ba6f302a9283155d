from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.authentication import request_user
from leaderboard import selectors
from leaderboard.api.serializers import (
    AroundQuerySerializer,
    BoardPageSerializer,
    BoardQuerySerializer,
    HistoryQuerySerializer,
    SnapshotSerializer,
    TopQuerySerializer,
)
from leaderboard.backends.base import BoardKey
from leaderboard.models import LeaderboardSnapshot
from leaderboard.services import board_row_data
from scoreboard.api import query_params, success
from scoreboard.openapi import success_envelope
from scoring.periods import period_start


def _board_query(
    request: Request, serializer_class: type[BoardQuerySerializer]
) -> tuple[dict[str, Any], BoardKey]:
    """The validated query and the key of the board it names (the current bucket)."""
    query = serializer_class(data=query_params(request))
    query.is_valid(raise_exception=True)
    params = dict(query.validated_data)
    return params, selectors.board_key(period=params["period"], country=params.get("country", ""))


def _page_data(page: selectors.BoardPage, *, key: BoardKey) -> dict[str, Any]:
    own = page.current_user
    return {
        "leaderboard": [board_row_data(row) for row in page.rows],
        "currentUser": {
            "rank": own.rank,
            "userId": str(own.user_id),
            "username": own.username,
            "score": own.score,
        },
        "totalUsers": page.total_users,
        "period": key.period,
        "periodStart": key.period_start.isoformat(),
        "country": key.country or None,
        "generatedAt": timezone.now().isoformat().replace("+00:00", "Z"),
    }


class TopView(APIView):
    @extend_schema(
        operation_id="leaderboard_top",
        parameters=[TopQuerySerializer],
        responses={200: success_envelope(BoardPageSerializer(), name="LeaderboardTopResponse")},
    )
    def get(self, request: Request) -> Response:
        params, key = _board_query(request, TopQuerySerializer)
        page = selectors.leaderboard_page(
            key=key, offset=params["offset"], limit=params["limit"], viewer=request_user(request)
        )
        return success(_page_data(page, key=key))


class AroundMeView(APIView):
    @extend_schema(
        operation_id="leaderboard_around_me",
        parameters=[AroundQuerySerializer],
        responses={
            200: success_envelope(BoardPageSerializer(), name="LeaderboardAroundMeResponse")
        },
    )
    def get(self, request: Request) -> Response:
        params, key = _board_query(request, AroundQuerySerializer)
        page = selectors.leaderboard_around(
            key=key, limit=params["limit"], viewer=request_user(request)
        )
        return success(_page_data(page, key=key))


class HistoryView(APIView):
    @extend_schema(
        operation_id="leaderboard_history",
        parameters=[HistoryQuerySerializer],
        responses={200: success_envelope(SnapshotSerializer(), name="LeaderboardHistoryResponse")},
    )
    def get(self, request: Request) -> Response:
        query = HistoryQuerySerializer(data=query_params(request))
        query.is_valid(raise_exception=True)
        period, day = query.validated_data["period"], query.validated_data["date"]
        start = period_start(period, datetime(day.year, day.month, day.day, tzinfo=UTC))
        snapshot = LeaderboardSnapshot.objects.filter(period=period, period_start=start).first()
        if snapshot is None:
            raise NotFound(f"No archived {period} standings for the period containing {day}.")
        return success(
            {
                "leaderboard": selectors.visible_snapshot_entries(snapshot.entries),
                "totalUsers": snapshot.total_users,
                "period": period,
                "periodStart": start.isoformat(),
                "generatedAt": snapshot.created_at.isoformat().replace("+00:00", "Z"),
            }
        )
