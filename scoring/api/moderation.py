"""The moderation queue for tooling: list flagged and held updates, approve or reject one.

Moderators only (the admin's rule, `scoring.moderation.can_moderate`): anyone else gets 403
FORBIDDEN, an anonymous caller 401. Decisions go through `scoring.moderation`, as the admin's
do; repeating a decision answers 200 with the outcome already reached, a decision the
update's state does not allow answers 409 DECISION_CONFLICT.
"""

from __future__ import annotations

import uuid
from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import serializers
from rest_framework.permissions import SAFE_METHODS, BasePermission, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.authentication import request_user
from scoreboard.api import (
    NewestFirstPagination,
    PageQuerySerializer,
    StrictCharField,
    StrictSerializer,
    query_params,
    success,
)
from scoreboard.idempotency import idempotent
from scoreboard.openapi import success_envelope
from scoring import moderation
from scoring.anomaly import ReasonCode
from scoring.api.serializers import ActionTypeField
from scoring.models import (
    REVIEW_REASON_MAX_LENGTH,
    REVIEW_STATUSES,
    ModerationAction,
    ScoreUpdate,
)


class IsModerator(BasePermission):
    message = "Only moderators may use the moderation queue."

    def has_permission(self, request: Request, view: Any) -> bool:
        permission = (
            moderation.VIEW_QUEUE_PERMISSION
            if request.method in SAFE_METHODS
            else moderation.DECIDE_PERMISSION
        )
        return moderation.can_moderate(request.user, permission)


class ModerationFlagQuerySerializer(PageQuerySerializer):
    status = serializers.ChoiceField(
        choices=[str(status) for status in REVIEW_STATUSES],
        required=False,
        help_text="Default both.",
    )
    reason = serializers.ChoiceField(
        choices=ReasonCode.values, required=False, help_text="Only updates with this reason."
    )
    actionType = ActionTypeField(required=False, help_text="Only updates of this action type.")


class ModerationFlagUserSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    username = serializers.CharField()
    isActive = serializers.BooleanField(source="is_active")


class ModerationFlagSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    user = ModerationFlagUserSerializer()
    actionType = serializers.CharField(source="action_type")
    actionId = serializers.UUIDField(source="action_id")
    scoreIncrement = serializers.IntegerField(source="score_increment")
    status = serializers.CharField(help_text="FLAGGED, HELD, or after a decision COUNTED/REJECTED.")
    reasons = serializers.SerializerMethodField(help_text="The reason codes of riskReasons.")
    riskReasons = serializers.JSONField(source="risk_reasons", help_text="As the rules wrote them.")
    ipAddress = serializers.IPAddressField(source="ip_address", allow_null=True)
    createdAt = serializers.DateTimeField(source="created_at")
    playerScore = serializers.IntegerField(
        source="player_score", allow_null=True, help_text="The player's all-time total now."
    )
    reviewDecision = serializers.CharField(
        source="review_decision", help_text="APPROVED, REJECTED or empty while undecided."
    )
    reviewedBy = serializers.UUIDField(source="reviewed_by_id", allow_null=True)
    reviewedAt = serializers.DateTimeField(source="reviewed_at", allow_null=True)
    reviewReason = serializers.CharField(source="review_reason")
    reversalId = serializers.SerializerMethodField(
        help_text="The compensating entry that took a rejected update's points back out."
    )

    def get_reasons(self, update: ScoreUpdate) -> list[str]:
        return moderation.reason_codes(update.risk_reasons)

    @extend_schema_field(serializers.UUIDField(allow_null=True))
    def get_reversalId(self, update: ScoreUpdate) -> str | None:
        reversal = getattr(update, "reversal", None)
        return str(reversal.pk) if reversal is not None else None


class ModerationFlagPageSerializer(serializers.Serializer):
    items = ModerationFlagSerializer(many=True)
    next = serializers.CharField(allow_null=True, help_text="Cursor URL of the older page.")
    previous = serializers.CharField(allow_null=True, help_text="Cursor URL of the newer page.")


UPDATE_ID = OpenApiParameter(
    "update_id", OpenApiTypes.UUID, OpenApiParameter.PATH, description="The score update's id."
)
DECISION_RESPONSE = success_envelope(ModerationFlagSerializer(), name="ModerationDecisionResponse")


class ModerationDecisionInputSerializer(StrictSerializer):
    reason = StrictCharField(max_length=REVIEW_REASON_MAX_LENGTH, required=False, allow_blank=True)


class FlagListView(APIView):
    permission_classes = (IsAuthenticated, IsModerator)

    @extend_schema(
        operation_id="moderation_flags_list",
        parameters=[ModerationFlagQuerySerializer],
        responses={
            200: success_envelope(ModerationFlagPageSerializer(), name="ModerationFlagsResponse")
        },
        description="Score updates waiting for a moderator, newest first. Moderators only.",
    )
    def get(self, request: Request) -> Response:
        query = ModerationFlagQuerySerializer(data=query_params(request))
        query.is_valid(raise_exception=True)
        params = query.validated_data
        queue = moderation.review_queue(
            statuses=[params["status"]] if "status" in params else REVIEW_STATUSES,
            reason=params.get("reason"),
            action_type=params.get("actionType"),
        ).select_related("reversal")
        paginator = NewestFirstPagination()
        page = paginator.paginate_queryset(queue, request, view=self)
        return success(
            {
                "items": ModerationFlagSerializer(page, many=True).data,
                "next": paginator.get_next_link(),
                "previous": paginator.get_previous_link(),
            }
        )


def _decided(update_id: uuid.UUID, outcome: moderation.ReviewOutcome) -> Response:
    update = moderation.with_player_score(
        ScoreUpdate.objects.filter(pk=update_id).select_related("user", "reversal")
    ).get()
    verb = "approved" if outcome.decision.action == ModerationAction.APPROVE else "rejected"
    message = f"Update {verb}." if outcome.changed else f"Already {verb}; nothing changed."
    return success(ModerationFlagSerializer(update).data, message=message)


class FlagApproveView(APIView):
    permission_classes = (IsAuthenticated, IsModerator)

    @extend_schema(
        operation_id="moderation_flags_approve",
        parameters=[UPDATE_ID],
        request=ModerationDecisionInputSerializer,
        responses={200: DECISION_RESPONSE},
        description=(
            "Approve a held update (its points count now, in the periods it was made in) or "
            "clear a flagged one. Approving again answers the same; a rejected update is a "
            "409 DECISION_CONFLICT."
        ),
    )
    @idempotent
    def post(self, request: Request, update_id: uuid.UUID) -> Response:
        body = ModerationDecisionInputSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        outcome = moderation.score_update_approve(
            update_id=update_id,
            moderator=request_user(request),
            reason=body.validated_data.get("reason", ""),
        )
        return _decided(update_id, outcome)


class FlagRejectView(APIView):
    permission_classes = (IsAuthenticated, IsModerator)

    @extend_schema(
        operation_id="moderation_flags_reject",
        parameters=[UPDATE_ID],
        request=ModerationDecisionInputSerializer,
        responses={200: DECISION_RESPONSE},
        description=(
            "Reject an update: one that counted is reverted by a compensating entry "
            "(`reversalId`), a held one is discarded. Rejecting again answers the same."
        ),
    )
    @idempotent
    def post(self, request: Request, update_id: uuid.UUID) -> Response:
        body = ModerationDecisionInputSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        outcome = moderation.score_update_reject(
            update_id=update_id,
            moderator=request_user(request),
            reason=body.validated_data.get("reason", ""),
        )
        return _decided(update_id, outcome)
