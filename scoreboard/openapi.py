"""OpenAPI documentation of the envelope: success wrappers and the shared error responses."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import inline_serializer
from rest_framework import serializers

from scoreboard.errors import ERROR_CODES

ERROR_RESPONSE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["success", "error"],
    "properties": {
        "success": {"type": "boolean", "enum": [False]},
        "error": {
            "type": "object",
            "required": ["code", "message", "timestamp", "requestId"],
            "properties": {
                "code": {"type": "string", "enum": list(ERROR_CODES)},
                "message": {"type": "string"},
                "details": {"description": "Field errors or other context; shape varies."},
                "retryAfter": {"type": "integer", "description": "Seconds; 429 and 503 only."},
                "timestamp": {"type": "string", "format": "date-time"},
                "requestId": {"type": "string", "description": "Also in X-Request-ID."},
            },
        },
    },
}

_ERROR_TABLE = "\n".join(
    f"| `{code}` | {http_status} | {meaning} |"
    for code, (http_status, meaning) in ERROR_CODES.items()
)
ERROR_RESPONSE_DESCRIPTION = (
    "Every error has this shape. Codes:\n\n| code | HTTP | meaning |\n|---|---|---|\n"
    + _ERROR_TABLE
)


def success_envelope(data: serializers.BaseSerializer, *, name: str) -> serializers.Serializer:
    """Document `{"success": true, "data": <data>, "message"?}` around a serializer."""
    return inline_serializer(
        name=name,
        fields={
            "success": serializers.BooleanField(),
            "data": data,
            "message": serializers.CharField(required=False),
        },
    )


def add_error_responses(result: dict[str, Any], **_: Any) -> dict[str, Any]:
    """drf-spectacular postprocessing hook: every operation may answer 4XX/5XX with the envelope."""
    components = result.setdefault("components", {})
    components.setdefault("schemas", {})["ErrorResponse"] = {
        **ERROR_RESPONSE_SCHEMA,
        "description": ERROR_RESPONSE_DESCRIPTION,
    }
    reference = {"$ref": "#/components/schemas/ErrorResponse"}
    for operations in result.get("paths", {}).values():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            for status_range, description in (
                ("4XX", "Client error (see ErrorResponse for the codes)"),
                ("5XX", "Server error or dependency outage"),
            ):
                responses.setdefault(
                    status_range,
                    {
                        "description": description,
                        "content": {"application/json": {"schema": reference}},
                    },
                )
    return result
