"""Building blocks shared by every API: the success envelope and strict input fields.

Strict means a JSON value is taken only in its own type: `"100"`, `true` and `1.5` are not
integers, `1` is not a string or a boolean, and a body with a field the serializer does not
declare is refused rather than silently ignored.
"""

from __future__ import annotations

from typing import Any

from rest_framework import serializers, status
from rest_framework.pagination import CursorPagination
from rest_framework.response import Response


def success(
    data: Any, *, message: str | None = None, status_code: int = status.HTTP_200_OK
) -> Response:
    body: dict[str, Any] = {"success": True, "data": data}
    if message:
        body["message"] = message
    return Response(body, status=status_code)


class StrictStringMixin:
    """A string and nothing else. NUL bytes are refused by CharField itself."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")  # type: ignore[attr-defined]
        return super().to_internal_value(data)  # type: ignore[misc]


class StrictCharField(StrictStringMixin, serializers.CharField):
    pass


class StrictEmailField(StrictStringMixin, serializers.EmailField):
    pass


class StrictURLField(StrictStringMixin, serializers.URLField):
    pass


class StrictIntegerField(serializers.IntegerField):
    default_error_messages = {"invalid": "A JSON integer is required."}

    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictBooleanField(serializers.BooleanField):
    default_error_messages = {"invalid": "A JSON boolean (true or false) is required."}

    def to_internal_value(self, data: Any) -> bool:
        if not isinstance(data, bool):
            self.fail("invalid")
        return data


class StrictSerializer(serializers.Serializer):
    """Refuses fields it does not declare, and bodies that are not JSON objects."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict):
            writable = {name for name, field in self.fields.items() if not field.read_only}
            unknown = sorted(set(data) - writable)
            if unknown:
                raise serializers.ValidationError({name: ["Unknown field."] for name in unknown})
        return super().to_internal_value(data)


class QueryIntegerField(serializers.IntegerField):
    """Decimal digits only: `10.0`, `+10`, ` 10` and `1e1` are refused."""

    def to_internal_value(self, data: Any) -> int:
        if not isinstance(data, str) or not data.isascii() or not data.isdigit() or len(data) > 9:
            self.fail("invalid")
        return super().to_internal_value(data)


def query_params(request: Any) -> dict[str, str]:
    """Single-valued query parameters; a parameter given twice is refused."""
    params = request.query_params
    repeated = sorted(name for name in params if len(params.getlist(name)) > 1)
    if repeated:
        raise serializers.ValidationError(
            {name: ["Give this parameter once."] for name in repeated}
        )
    return {name: params[name] for name in params}


class PageQuerySerializer(StrictSerializer):
    """The query of a cursor-paginated list: checked before the paginator reads it, which
    would otherwise take a malformed `limit` silently as the default."""

    cursor = StrictCharField(max_length=200, required=False, help_text="From `next` or `previous`.")
    limit = QueryIntegerField(
        min_value=1, max_value=100, required=False, help_text="Items per page (20)."
    )


class NewestFirstPagination(CursorPagination):
    ordering = ("-created_at", "-id")
    page_size = 20
    page_size_query_param = "limit"
    max_page_size = 100
