from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from accounts.models import AVATAR_MAX_LENGTH, EMAIL_MAX_LENGTH, USERNAME_MAX_LENGTH, User
from scoreboard.api import (
    StrictBooleanField,
    StrictCharField,
    StrictEmailField,
    StrictSerializer,
    StrictURLField,
)

PASSWORD_MAX_LENGTH = 128


@extend_schema_field(
    {
        "type": "string",
        "maxLength": AVATAR_MAX_LENGTH,
        "anyOf": [{"format": "uri"}, {"maxLength": 0}],
        "description": "An image URL, or empty for none.",
    }
)
class AvatarField(StrictURLField):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(max_length=AVATAR_MAX_LENGTH, allow_blank=True, **kwargs)


class RegisterInputSerializer(StrictSerializer):
    username = StrictCharField(max_length=USERNAME_MAX_LENGTH)
    email = StrictEmailField(max_length=EMAIL_MAX_LENGTH)
    password = StrictCharField(max_length=PASSWORD_MAX_LENGTH, trim_whitespace=False)
    country = StrictCharField(max_length=2, required=False, allow_blank=True)
    avatar = AvatarField(required=False)


class TokenInputSerializer(StrictSerializer):
    username = StrictCharField(max_length=EMAIL_MAX_LENGTH)
    password = StrictCharField(max_length=PASSWORD_MAX_LENGTH, trim_whitespace=False)


class TokenRefreshInputSerializer(StrictSerializer):
    refreshToken = StrictCharField(max_length=4096)


class ProfileUpdateInputSerializer(StrictSerializer):
    country = StrictCharField(max_length=2, required=False, allow_blank=True)
    avatar = AvatarField(required=False)
    hideFromLeaderboards = StrictBooleanField(required=False)


class UserOutputSerializer(serializers.ModelSerializer[User]):
    avatar = AvatarField(read_only=True)
    hideFromLeaderboards = serializers.BooleanField(source="hide_from_leaderboards")
    createdAt = serializers.DateTimeField(source="created_at")
    lastActive = serializers.DateTimeField(source="last_active_at")

    class Meta:
        model = User
        fields = [
            "id",
            "username",
            "email",
            "country",
            "avatar",
            "role",
            "hideFromLeaderboards",
            "createdAt",
            "lastActive",
        ]
        read_only_fields = fields


class ProfileOutputSerializer(UserOutputSerializer):
    """The caller's own profile: the public one plus their all-time score and rank."""

    score = serializers.IntegerField(read_only=True)
    rank = serializers.IntegerField(
        read_only=True, allow_null=True, help_text="All-time rank; null when not ranked."
    )

    class Meta(UserOutputSerializer.Meta):
        fields = [*UserOutputSerializer.Meta.fields, "score", "rank"]
        read_only_fields = fields


class TokenPairOutputSerializer(serializers.Serializer):
    accessToken = serializers.CharField()
    refreshToken = serializers.CharField()
    tokenType = serializers.CharField()
    expiresIn = serializers.IntegerField(help_text="Seconds until the access token expires.")
    signingKey = serializers.CharField(
        help_text="Hex key for the clientSignature HMAC of score updates."
    )
    user = UserOutputSerializer()


class SigningKeyOutputSerializer(serializers.Serializer):
    signingKey = serializers.CharField()


class EraseInputSerializer(StrictSerializer):
    password = StrictCharField(
        max_length=PASSWORD_MAX_LENGTH,
        trim_whitespace=False,
        help_text="The account's current password, to confirm the erasure.",
    )


# --- the GDPR export (GET users/me/export): keys as stored, in camelCase ---------------------


class ExportProfileSerializer(serializers.Serializer):
    id = serializers.UUIDField(source="user.id")
    username = serializers.CharField(source="user.username")
    email = serializers.EmailField(source="user.email")
    country = serializers.CharField(source="user.country")
    avatar = serializers.CharField(source="user.avatar")
    role = serializers.CharField(source="user.role")
    isActive = serializers.BooleanField(source="user.is_active")
    hideFromLeaderboards = serializers.BooleanField(source="user.hide_from_leaderboards")
    signingKeyVersion = serializers.IntegerField(
        source="user.signing_key_version",
        help_text="Which signing key is current; the key itself is in the token response.",
    )
    groups = serializers.ListField(child=serializers.CharField())
    permissions = serializers.ListField(
        child=serializers.CharField(), help_text="Permissions given to the user directly."
    )
    createdAt = serializers.DateTimeField(source="user.created_at")
    lastActive = serializers.DateTimeField(source="user.last_active_at")
    lastLogin = serializers.DateTimeField(
        source="user.last_login", allow_null=True, help_text="Last sign-in to the admin."
    )


class ExportScoreUpdateSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    board = serializers.CharField()
    actionType = serializers.CharField(source="action_type")
    actionId = serializers.UUIDField(source="action_id")
    actionTokenId = serializers.UUIDField(source="action_token_id", allow_null=True)
    scoreIncrement = serializers.IntegerField(source="score_increment")
    previousScore = serializers.IntegerField(source="previous_score")
    newScore = serializers.IntegerField(source="new_score")
    previousRank = serializers.IntegerField(source="previous_rank", allow_null=True)
    newRank = serializers.IntegerField(source="new_rank", allow_null=True)
    status = serializers.CharField(
        help_text="As stored: COUNTED, FLAGGED, HELD, REJECTED or REVERSAL."
    )
    riskReasons = serializers.JSONField(source="risk_reasons")
    ipAddress = serializers.IPAddressField(source="ip_address", allow_null=True)
    userAgent = serializers.CharField(source="user_agent")
    clientTimestamp = serializers.DateTimeField(source="client_timestamp", allow_null=True)
    verified = serializers.BooleanField()
    createdAt = serializers.DateTimeField(source="created_at")
    reviewDecision = serializers.CharField(source="review_decision")
    reviewReason = serializers.CharField(source="review_reason")
    reviewedAt = serializers.DateTimeField(source="reviewed_at", allow_null=True)
    reversesId = serializers.UUIDField(source="reverses_id", allow_null=True)


class ExportTotalSerializer(serializers.Serializer):
    board = serializers.CharField()
    period = serializers.CharField()
    periodStart = serializers.DateField(source="period_start")
    score = serializers.IntegerField()
    reachedAt = serializers.DateTimeField(source="reached_at")


class ExportActionTokenSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    actionType = serializers.CharField(source="action_type_id")
    actionId = serializers.UUIDField(source="action_id")
    points = serializers.IntegerField()
    completedAt = serializers.DateTimeField(source="completed_at")
    createdAt = serializers.DateTimeField(source="created_at")
    expiresAt = serializers.DateTimeField(source="expires_at")
    usedAt = serializers.DateTimeField(source="used_at", allow_null=True)
    isValid = serializers.BooleanField(source="is_valid")


class ExportRefreshTokenSerializer(serializers.Serializer):
    jti = serializers.CharField()
    createdAt = serializers.DateTimeField(source="created_at", allow_null=True)
    expiresAt = serializers.DateTimeField(source="expires_at")
    blacklistedAt = serializers.DateTimeField(source="blacklisted_at", allow_null=True)


class ExportDecisionTakenSerializer(serializers.Serializer):
    """A decision the user took as a moderator, without the player it was about (that is the
    player's data, not theirs)."""

    id = serializers.UUIDField()
    action = serializers.CharField()
    previousStatus = serializers.CharField(source="previous_status")
    newStatus = serializers.CharField(source="new_status")
    points = serializers.IntegerField()
    reason = serializers.CharField()
    createdAt = serializers.DateTimeField(source="created_at")


class ExportDecisionSerializer(ExportDecisionTakenSerializer):
    """A moderator's decision about the user, without the moderator's identity."""

    scoreUpdateId = serializers.UUIDField(source="score_update_id", allow_null=True)


class UserExportSerializer(serializers.Serializer):
    formatVersion = serializers.IntegerField(source="format_version")
    exportedAt = serializers.DateTimeField(source="exported_at")
    profile = ExportProfileSerializer(source="*")
    scoreHistory = ExportScoreUpdateSerializer(source="score_updates", many=True)
    totals = ExportTotalSerializer(many=True)
    actionTokens = ExportActionTokenSerializer(source="action_tokens", many=True)
    refreshTokens = ExportRefreshTokenSerializer(source="refresh_tokens", many=True)
    moderationDecisions = ExportDecisionSerializer(source="moderation_decisions", many=True)
    moderationDecisionsTaken = ExportDecisionTakenSerializer(
        source="moderation_decisions_taken", many=True
    )
