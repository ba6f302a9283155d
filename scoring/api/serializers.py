"""Strict request bodies of the score pipeline, and its responses.

Signed messages are built from fields exactly as the client sent them, so ids and timestamps
are validated here but kept as text; the services receive both forms.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from scoreboard.api import StrictCharField, StrictIntegerField, StrictSerializer
from scoreboard.openapi import openapi_pattern
from scoring.models import ACTION_TYPE_PATTERN, MAX_SCORE_INCREMENT, ScoreStatus, ScoreUpdate
from scoring.selectors import action_active_by_type
from scoring.services import ActionClaim, ScoreClaim

_TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}:\d{2})\Z")
_UUID = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}\Z")
_HEX_SHA256 = re.compile(r"^[0-9a-fA-F]{64}\Z")


@extend_schema_field({"type": "string", "format": "uuid"})
class UUIDTextField(StrictCharField):
    default_error_messages = {"invalid": "A UUID string (8-4-4-4-12 hex digits) is required."}

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(max_length=36, **kwargs)

    def to_internal_value(self, data: Any) -> str:
        text = super().to_internal_value(data)
        if not _UUID.match(text):
            self.fail("invalid")
        return text


@extend_schema_field(
    {"type": "string", "format": "date-time", "pattern": openapi_pattern(_TIMESTAMP.pattern)}
)
class TimestampTextField(StrictCharField):
    default_error_messages = {
        "invalid": "An ISO 8601 date-time with seconds and a UTC offset is required, "
        "e.g. 2025-10-30T10:30:00Z."
    }

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(max_length=40, **kwargs)

    def to_internal_value(self, data: Any) -> str:
        text = super().to_internal_value(data)
        if not _TIMESTAMP.match(text):
            self.fail("invalid")
        try:
            datetime.fromisoformat(text)
        except ValueError:
            self.fail("invalid")
        return text


@extend_schema_field({"type": "string", "pattern": openapi_pattern(_HEX_SHA256.pattern)})
class SignatureField(StrictCharField):
    default_error_messages = {"invalid": "A hex HMAC-SHA256 (64 hex digits) is required."}

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(max_length=64, **kwargs)

    def to_internal_value(self, data: Any) -> str:
        text = super().to_internal_value(data)
        if not _HEX_SHA256.match(text):
            self.fail("invalid")
        return text


@extend_schema_field(
    {"type": "string", "maxLength": 50, "pattern": openapi_pattern(ACTION_TYPE_PATTERN)}
)
class ActionTypeField(StrictCharField):
    default_error_messages = {"invalid": "Upper-case letters, digits and underscores."}

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(max_length=50, **kwargs)

    def to_internal_value(self, data: Any) -> str:
        text = super().to_internal_value(data)
        if not re.match(ACTION_TYPE_PATTERN, text):
            self.fail("invalid")
        return text


class ProofInputSerializer(StrictSerializer):
    keyId = StrictCharField(max_length=64)
    signature = SignatureField()


class ActionCompleteInputSerializer(StrictSerializer):
    actionId = UUIDTextField()
    actionType = ActionTypeField()
    timestamp = TimestampTextField()
    proof = ProofInputSerializer()

    def to_claim(self) -> ActionClaim:
        data = self.validated_data
        return ActionClaim(
            action_type=data["actionType"],
            action_id=uuid.UUID(data["actionId"]),
            action_id_text=data["actionId"],
            timestamp=datetime.fromisoformat(data["timestamp"]),
            timestamp_text=data["timestamp"],
            key_id=data["proof"]["keyId"],
            signature=data["proof"]["signature"],
        )


class ActionTokenOutputSerializer(serializers.Serializer):
    actionToken = serializers.CharField()
    expiresIn = serializers.IntegerField(help_text="Seconds the token stays valid.")
    scoreIncrement = serializers.IntegerField(help_text="Points the action is worth.")


class ScoreUpdateInputSerializer(StrictSerializer):
    userId = UUIDTextField()
    actionType = ActionTypeField()
    actionId = UUIDTextField()
    scoreIncrement = StrictIntegerField(min_value=1, max_value=MAX_SCORE_INCREMENT)
    timestamp = TimestampTextField()
    clientSignature = SignatureField()

    def validate_actionType(self, value: str) -> str:
        if action_active_by_type(value) is None:
            raise serializers.ValidationError("Unknown or inactive action type.")
        return value

    def to_claim(self) -> ScoreClaim:
        data = self.validated_data
        return ScoreClaim(
            user_id=uuid.UUID(data["userId"]),
            user_id_text=data["userId"],
            action_type=data["actionType"],
            action_id=uuid.UUID(data["actionId"]),
            action_id_text=data["actionId"],
            score_increment=data["scoreIncrement"],
            timestamp=datetime.fromisoformat(data["timestamp"]),
            timestamp_text=data["timestamp"],
            client_signature=data["clientSignature"],
        )


class ScoreUpdateOutputSerializer(serializers.Serializer):
    userId = serializers.UUIDField()
    newScore = serializers.IntegerField()
    scoreIncrement = serializers.IntegerField()
    rank = serializers.IntegerField(allow_null=True, help_text="Null while not ranked (hidden).")
    previousRank = serializers.IntegerField(allow_null=True, help_text="Null if not ranked.")
    timestamp = serializers.DateTimeField()


class ScoreUpdateHeldOutputSerializer(ScoreUpdateOutputSerializer):
    """A held update (202): recorded but not counted, so `newScore`, `rank` and
    `previousRank` are the player's standing without it; `scoreIncrement` is what a
    moderator's approval would add."""

    status = serializers.ChoiceField(
        choices=["PENDING_REVIEW"], help_text="Waiting for a moderator's decision."
    )


# What players see of an update's review state: a flag stays internal to moderators. A
# moderator's reversal (negative increment, listed when the update was rejected) belongs to
# the rejection: REJECTED like the update it cancels, so the COUNTED rows still add up to the
# player's total.
PUBLIC_STATUS = {
    ScoreStatus.COUNTED: "COUNTED",
    ScoreStatus.FLAGGED: "COUNTED",
    ScoreStatus.HELD: "PENDING_REVIEW",
    ScoreStatus.REJECTED: "REJECTED",
    ScoreStatus.REVERSAL: "REJECTED",
}


class ScoreHistoryItemSerializer(serializers.ModelSerializer[ScoreUpdate]):
    actionType = serializers.CharField(source="action_type")
    actionId = serializers.UUIDField(source="action_id")
    scoreIncrement = serializers.IntegerField(source="score_increment")
    previousScore = serializers.IntegerField(source="previous_score")
    newScore = serializers.IntegerField(source="new_score")
    previousRank = serializers.IntegerField(source="previous_rank", allow_null=True)
    newRank = serializers.IntegerField(source="new_rank", allow_null=True)
    status = serializers.SerializerMethodField()
    createdAt = serializers.DateTimeField(source="created_at")

    class Meta:
        model = ScoreUpdate
        fields = [
            "id",
            "actionType",
            "actionId",
            "scoreIncrement",
            "previousScore",
            "newScore",
            "previousRank",
            "newRank",
            "status",
            "createdAt",
        ]

    @extend_schema_field(serializers.ChoiceField(choices=sorted(set(PUBLIC_STATUS.values()))))
    def get_status(self, update: ScoreUpdate) -> str:
        return PUBLIC_STATUS[ScoreStatus(update.status)]


class ScoreHistoryPageSerializer(serializers.Serializer):
    items = ScoreHistoryItemSerializer(many=True)
    next = serializers.CharField(allow_null=True, help_text="Cursor URL of the older page.")
    previous = serializers.CharField(allow_null=True, help_text="Cursor URL of the newer page.")
