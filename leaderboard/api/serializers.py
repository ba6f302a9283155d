"""Query parameters and responses of the board endpoints."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from accounts.countries import COUNTRY_CODES
from scoreboard.api import StrictSerializer
from scoring.periods import Period

MAX_OFFSET = 1_000_000


class BoardQuerySerializer(StrictSerializer):
    """Query strings are text, so numbers are parsed here, strictly (digits only)."""

    period = serializers.ChoiceField(choices=Period.values, default=Period.ALL_TIME)
    country = serializers.CharField(max_length=2, required=False, default="")

    def validate_country(self, value: str) -> str:
        if value and value not in COUNTRY_CODES:
            raise serializers.ValidationError("An ISO 3166-1 alpha-2 code, e.g. US.")
        return value


class QueryIntegerField(serializers.IntegerField):
    """Decimal digits only: `10.0`, `+10`, ` 10` and `1e1` are refused."""

    def to_internal_value(self, data: Any) -> int:
        if not isinstance(data, str) or not data.isascii() or not data.isdigit() or len(data) > 9:
            self.fail("invalid")
        return super().to_internal_value(data)


class TopQuerySerializer(BoardQuerySerializer):
    limit = QueryIntegerField(min_value=1, max_value=100, default=10)
    offset = QueryIntegerField(min_value=0, max_value=MAX_OFFSET, default=0)


class AroundQuerySerializer(BoardQuerySerializer):
    limit = QueryIntegerField(min_value=1, max_value=50, default=5)


class HistoryQuerySerializer(StrictSerializer):
    period = serializers.ChoiceField(
        choices=[Period.DAILY, Period.WEEKLY, Period.MONTHLY], default=Period.DAILY
    )
    date = serializers.DateField(input_formats=["%Y-%m-%d"])


def query_params(request: Any) -> dict[str, str]:
    """Single-valued query parameters; a parameter given twice is refused."""
    params = request.query_params
    repeated = sorted(name for name in params if len(params.getlist(name)) > 1)
    if repeated:
        raise serializers.ValidationError(
            {name: ["Give this parameter once."] for name in repeated}
        )
    return {name: params[name] for name in params}


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
