"""OpenAPI documentation of the envelope: success wrappers, the shared error responses and
the rate-limit headers."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiSerializerExtension
from drf_spectacular.utils import inline_serializer
from rest_framework import serializers

from scoreboard.errors import ERROR_CODES
from scoreboard.ratelimit import RATE_LIMIT_HEADERS

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


_INTEGER = {"type": "integer"}
RESPONSE_HEADERS: dict[str, Any] = {
    "X-RateLimit-Limit": {
        "description": "Requests allowed per window by the tightest limit on this request.",
        "schema": _INTEGER,
    },
    "X-RateLimit-Remaining": {"description": "Requests left in that window.", "schema": _INTEGER},
    "X-RateLimit-Reset": {"description": "Seconds until that window ends.", "schema": _INTEGER},
    "Retry-After": {"description": "Seconds to wait before trying again.", "schema": _INTEGER},
}


class StrictSerializerSchema(OpenApiSerializerExtension):
    """A StrictSerializer refuses fields it does not declare; its request schema says so.
    (drf-spectacular registers an extension when its class is defined: every API module
    imports this one.)"""

    target_class = "scoreboard.api.StrictSerializer"
    match_subclasses = True

    def map_serializer(self, auto_schema: Any, direction: str) -> dict[str, Any]:
        schema: dict[str, Any] = auto_schema._map_serializer(
            self.target, direction, bypass_extensions=True
        )
        if direction == "request":
            schema["additionalProperties"] = False
        return schema


def openapi_pattern(python_pattern: str) -> str:
    """A validator's regular expression as an OpenAPI `pattern` (ECMA-262): Python's `\\Z`
    (end of text, no trailing newline allowed) is written `$` there."""
    return python_pattern.removesuffix(r"\Z") + "$"


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
    components["headers"] = RESPONSE_HEADERS
    reference = {"$ref": "#/components/schemas/ErrorResponse"}
    for operations in result.get("paths", {}).values():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            _add_rate_limit_responses(responses, reference)
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


def _add_rate_limit_responses(responses: dict[str, Any], error: dict[str, str]) -> None:
    """Every API request is rate-limited (docs/api.md): successes carry the X-RateLimit-*
    headers, and any operation may answer 429 with Retry-After."""
    rate_limit_headers = {name: _header(name) for name in RATE_LIMIT_HEADERS}
    for status_code, response in responses.items():
        if status_code.startswith("2"):
            response.setdefault("headers", {}).update(rate_limit_headers)
    responses.setdefault(
        "429",
        {
            "description": "Rate limit exceeded (`RATE_LIMIT_EXCEEDED`); retry after `retryAfter`",
            "headers": {"Retry-After": _header("Retry-After"), **rate_limit_headers},
            "content": {"application/json": {"schema": error}},
        },
    )


def _header(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/headers/{name}"}
