from __future__ import annotations

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


class RegisterInputSerializer(StrictSerializer):
    username = StrictCharField(max_length=USERNAME_MAX_LENGTH)
    email = StrictEmailField(max_length=EMAIL_MAX_LENGTH)
    password = StrictCharField(max_length=PASSWORD_MAX_LENGTH, trim_whitespace=False)
    country = StrictCharField(max_length=2, required=False, allow_blank=True)
    avatar = StrictURLField(max_length=AVATAR_MAX_LENGTH, required=False, allow_blank=True)


class TokenInputSerializer(StrictSerializer):
    username = StrictCharField(max_length=EMAIL_MAX_LENGTH)
    password = StrictCharField(max_length=PASSWORD_MAX_LENGTH, trim_whitespace=False)


class TokenRefreshInputSerializer(StrictSerializer):
    refreshToken = StrictCharField(max_length=4096)


class ProfileUpdateInputSerializer(StrictSerializer):
    country = StrictCharField(max_length=2, required=False, allow_blank=True)
    avatar = StrictURLField(max_length=AVATAR_MAX_LENGTH, required=False, allow_blank=True)
    hideFromLeaderboards = StrictBooleanField(required=False)


class UserOutputSerializer(serializers.ModelSerializer[User]):
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
