from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.authentication import request_user
from scoreboard import metrics, ratelimit
from scoreboard.api import NewestFirstPagination, PageQuerySerializer, query_params, success
from scoreboard.client_ip import client_ip
from scoreboard.idempotency import idempotent
from scoreboard.openapi import success_envelope
from scoring import selectors, services
from scoring.api.serializers import (
    PUBLIC_STATUS,
    ActionCompleteInputSerializer,
    ActionTokenOutputSerializer,
    ScoreHistoryItemSerializer,
    ScoreHistoryPageSerializer,
    ScoreUpdateHeldOutputSerializer,
    ScoreUpdateInputSerializer,
    ScoreUpdateOutputSerializer,
)
from scoring.models import ScoreStatus

ACTION_TOKEN_HEADER = OpenApiParameter(
    "X-Action-Token",
    location=OpenApiParameter.HEADER,
    required=True,
    description="The one-time token from `POST /api/v1/actions/complete`.",
)


class ActionCompleteView(APIView):
    @extend_schema(
        operation_id="actions_complete",
        request=ActionCompleteInputSerializer,
        responses={
            201: success_envelope(ActionTokenOutputSerializer(), name="ActionTokenResponse")
        },
    )
    @idempotent
    @metrics.rejections_counted(metrics.ACTION_COMPLETIONS_REJECTED)
    def post(self, request: Request) -> Response:
        serializer = ActionCompleteInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        issued = services.action_complete(user=request_user(request), claim=serializer.to_claim())
        return success(
            {
                "actionToken": issued.token,
                "expiresIn": issued.expires_in,
                "scoreIncrement": issued.score_increment,
            },
            status_code=status.HTTP_201_CREATED,
        )


class ScoreUpdateView(APIView):
    @extend_schema(
        operation_id="scores_update",
        parameters=[ACTION_TOKEN_HEADER],
        request=ScoreUpdateInputSerializer,
        responses={
            200: success_envelope(ScoreUpdateOutputSerializer(), name="ScoreUpdateResponse"),
            202: success_envelope(
                ScoreUpdateHeldOutputSerializer(), name="ScoreUpdateHeldResponse"
            ),
        },
    )
    @idempotent
    @metrics.rejections_counted(metrics.SCORE_UPDATES_REJECTED)
    def post(self, request: Request) -> Response:
        user = request_user(request)
        ratelimit.enforce(
            request, [(ratelimit.score_update_limit(), str(user.pk))], fail_closed=True
        )
        serializer = ScoreUpdateInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        applied = services.score_update_submit(
            user=user,
            claim=serializer.to_claim(),
            action_token=request.headers.get("X-Action-Token", ""),
            ip_address=client_ip(request),
            user_agent=request.headers.get("User-Agent", ""),
        )
        update = applied.score_update
        data = {
            "userId": update.user_id,
            "newScore": applied.new_score,
            "scoreIncrement": update.score_increment,
            "rank": applied.new_rank,
            "previousRank": applied.previous_rank,
            "timestamp": update.created_at,
        }
        if applied.is_held:
            return success(
                ScoreUpdateHeldOutputSerializer(
                    {**data, "status": PUBLIC_STATUS[ScoreStatus(update.status)]}
                ).data,
                message="Score update held for review",
                status_code=status.HTTP_202_ACCEPTED,
            )
        return success(ScoreUpdateOutputSerializer(data).data, message="Score updated successfully")


class ScoreHistoryView(APIView):
    @extend_schema(
        operation_id="users_me_history",
        parameters=[PageQuerySerializer],
        responses={
            200: success_envelope(ScoreHistoryPageSerializer(), name="ScoreHistoryResponse")
        },
    )
    def get(self, request: Request) -> Response:
        PageQuerySerializer(data=query_params(request)).is_valid(raise_exception=True)
        paginator = NewestFirstPagination()
        page = paginator.paginate_queryset(
            selectors.score_updates_for_user(user_id=request_user(request).pk), request, view=self
        )
        return success(
            {
                "items": ScoreHistoryItemSerializer(page, many=True).data,
                "next": paginator.get_next_link(),
                "previous": paginator.get_previous_link(),
            }
        )
