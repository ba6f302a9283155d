"""Query parameters and responses of the board endpoints."""

from __future__ import annotations

from rest_framework import serializers

from accounts.countries import COUNTRY_CODES
from scoreboard.api import QueryIntegerField, StrictSerializer
from scoring.periods import Period

MAX_OFFSET = 1_000_000


class BoardQuerySerializer(StrictSerializer):
    """Query strings are text, so numbers are parsed here, strictly (digits only)."""

    period = serializers.ChoiceField(
        choices=Period.values,
        default=Period.ALL_TIME,
        help_text="ALL_TIME (default), DAILY (UTC day), WEEKLY (ISO week), MONTHLY.",
    )
    country = serializers.CharField(
        max_length=2, required=False, help_text="ISO 3166-1 alpha-2: that country only."
    )

    def validate_country(self, value: str) -> str:
        if value and value not in COUNTRY_CODES:
            raise serializers.ValidationError("An ISO 3166-1 alpha-2 code, e.g. US.")
        return value


class TopQuerySerializer(BoardQuerySerializer):
    limit = QueryIntegerField(min_value=1, max_value=100, default=10)
    offset = QueryIntegerField(min_value=0, max_value=MAX_OFFSET, default=0)


class AroundQuerySerializer(BoardQuerySerializer):
    limit = QueryIntegerField(
        min_value=1, max_value=50, default=5, help_text="Entries above and below."
    )


class HistoryQuerySerializer(StrictSerializer):
    period = serializers.ChoiceField(
        choices=[Period.DAILY, Period.WEEKLY, Period.MONTHLY], default=Period.DAILY
    )
    date = serializers.DateField(input_formats=["%Y-%m-%d"], help_text="A day in the period.")


class BoardEntrySerializer(serializers.Serializer):
    rank = serializers.IntegerField()
    userId = serializers.UUIDField()
    username = serializers.CharField()
    score = serializers.IntegerField()
    avatar = serializers.CharField()
    country = serializers.CharField()
    lastUpdated = serializers.DateTimeField()


class CurrentUserSerializer(serializers.Serializer):
    rank = serializers.IntegerField(allow_null=True, help_text="Null when not on this board.")
    userId = serializers.UUIDField()
    username = serializers.CharField()
    score = serializers.IntegerField()


class BoardPageSerializer(serializers.Serializer):
    leaderboard = BoardEntrySerializer(many=True)
    currentUser = CurrentUserSerializer()
    totalUsers = serializers.IntegerField()
    period = serializers.ChoiceField(choices=Period.values)
    periodStart = serializers.DateField()
    country = serializers.CharField(allow_null=True)
    generatedAt = serializers.DateTimeField()


class SnapshotSerializer(serializers.Serializer):
    leaderboard = BoardEntrySerializer(many=True)
    totalUsers = serializers.IntegerField()
    period = serializers.ChoiceField(choices=Period.values)
    periodStart = serializers.DateField()
    generatedAt = serializers.DateTimeField()
