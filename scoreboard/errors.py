"""The one place that knows the error envelope (DESIGN.md §4).

`{"success": false, "error": {"code", "message", "details"?, "timestamp", "requestId"}}`

Domain code raises an `ApplicationError` subclass; DRF's own exceptions, Django's 404/403 and
dependency outages are mapped here; `ApiErrorEnvelopeMiddleware` reshapes whatever else
reaches an `/api/` client (Django's 404 page, a middleware crash) through `error_response`.
WebSocket consumers send `error_object(...)` as the data of their `error` events.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from django.core.exceptions import PermissionDenied, RequestDataTooBig
from django.db import InterfaceError, OperationalError
from django.http import Http404, JsonResponse
from django.utils import timezone
from django_redis.exceptions import ConnectionInterrupted
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rest_framework import exceptions, status
from rest_framework.response import Response

from scoreboard.client_ip import client_ip
from scoreboard.request_context import current_request_id, request_route, request_user_id
from scoreboard.security_events import security_event

logger = logging.getLogger(__name__)

# code → (HTTP status, what it means). The first twelve come from the product spec; the rest
# cover HTTP situations none of those fit. DATABASE_ERROR and REDIS_ERROR are outages, hence
# 503 (retryable) rather than the spec's 500.
ERROR_CODES: dict[str, tuple[int, str]] = {
    "UNAUTHORIZED": (401, "Missing or invalid authentication token or credentials"),
    "FORBIDDEN": (403, "The caller may not do this"),
    "INVALID_ACTION_TOKEN": (403, "Action token is invalid or already used"),
    "RATE_LIMIT_EXCEEDED": (429, "Too many requests; see retryAfter"),
    "INVALID_INPUT": (400, "Request validation failed; see details"),
    "ACTION_NOT_FOUND": (404, "Action does not exist"),
    "USER_NOT_FOUND": (404, "User does not exist"),
    "ACTION_ALREADY_COMPLETED": (409, "Action was already completed"),
    "TOKEN_EXPIRED": (401, "Token has expired"),
    "INTERNAL_ERROR": (500, "Unexpected server error"),
    "DATABASE_ERROR": (503, "The database is unavailable; retry later"),
    "REDIS_ERROR": (503, "Redis is unavailable; retry later"),
    "NOT_FOUND": (404, "No such resource or route"),
    "METHOD_NOT_ALLOWED": (405, "The route does not accept this HTTP method"),
    "NOT_ACCEPTABLE": (406, "No acceptable response format (the API speaks JSON)"),
    "PAYLOAD_TOO_LARGE": (413, "Request body over 64 KiB"),
    "UNSUPPORTED_MEDIA_TYPE": (415, "Request body is not application/json"),
    "DECISION_CONFLICT": (409, "The update's review state does not allow this decision"),
    "IDEMPOTENCY_KEY_REUSED": (422, "Idempotency-Key already used with a different request"),
    "SERVICE_UNAVAILABLE": (503, "A dependency is unavailable; retry later"),
}

# The code used when all we know is the HTTP status.
CODE_FOR_STATUS = {
    400: "INVALID_INPUT",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    406: "NOT_ACCEPTABLE",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
    429: "RATE_LIMIT_EXCEEDED",
    503: "SERVICE_UNAVAILABLE",
}

OUTAGE_RETRY_AFTER_SECONDS = 5
# Where errors about the body as a whole go in `details` (DRF's NON_FIELD_ERRORS_KEY too).
NON_FIELD_ERRORS = "nonFieldErrors"
REDIS_OUTAGES = (ConnectionInterrupted, RedisConnectionError, RedisTimeoutError)


class ApplicationError(exceptions.APIException):
    """A domain error with a stable code. Raise a subclass; the handler renders the envelope.

    An error with a `security_event` name (the class's, or one given where it is raised) is
    also logged as a security event (scoreboard/security_events.py).
    """

    status_code: int = status.HTTP_400_BAD_REQUEST
    error_code = "INVALID_INPUT"
    default_detail = "Request validation failed."
    default_security_event: str | None = None

    def __init__(
        self,
        message: str | None = None,
        *,
        details: dict[str, Any] | None = None,
        retry_after: int | None = None,
        security_event: str | None = None,
    ) -> None:
        super().__init__(message or self.default_detail)
        self.details = details
        self.retry_after = retry_after
        self.security_event = security_event or self.default_security_event


class InvalidInput(ApplicationError):
    @classmethod
    def for_fields(cls, details: dict[str, list[str]]) -> InvalidInput:
        """Field errors, with the first one as the message (as DRF validation is reported)."""
        return cls(_first_validation_message(details), details=details)


class Unauthorized(ApplicationError, exceptions.AuthenticationFailed):
    status_code = status.HTTP_401_UNAUTHORIZED
    error_code = "UNAUTHORIZED"
    default_detail = "Invalid or expired authentication token."


class TokenExpired(Unauthorized):
    error_code = "TOKEN_EXPIRED"
    default_detail = "The token has expired."


class Forbidden(ApplicationError):
    status_code = status.HTTP_403_FORBIDDEN
    error_code = "FORBIDDEN"
    default_detail = "You do not have permission to do this."


class RateLimited(ApplicationError):
    """Raise with `retry_after`: the seconds until the window that refused the request ends."""

    status_code = status.HTTP_429_TOO_MANY_REQUESTS
    error_code = "RATE_LIMIT_EXCEEDED"
    default_detail = "Too many requests. Please wait before trying again."


class ServiceUnavailable(ApplicationError):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    error_code = "SERVICE_UNAVAILABLE"
    default_detail = "A dependency is unavailable. Retry later."


class DatabaseUnavailable(ServiceUnavailable):
    error_code = "DATABASE_ERROR"
    default_detail = "The database is unavailable. Retry later."


class RedisUnavailable(ServiceUnavailable):
    error_code = "REDIS_ERROR"
    default_detail = "Redis is unavailable. Retry later."


class IdempotencyKeyReused(ApplicationError):
    status_code = status.HTTP_422_UNPROCESSABLE_ENTITY
    error_code = "IDEMPOTENCY_KEY_REUSED"
    default_detail = "This Idempotency-Key was already used with a different request."


class PayloadTooLarge(ApplicationError):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    error_code = "PAYLOAD_TOO_LARGE"
    default_detail = "The request body is larger than 64 KiB."


def error_object(
    code: str,
    message: str,
    *,
    details: Any = None,
    retry_after: int | None = None,
) -> dict[str, Any]:
    """The inner `error` object, shared by HTTP responses and WebSocket `error` events."""
    body: dict[str, Any] = {"code": code, "message": message}
    if details:
        body["details"] = details
    if retry_after is not None:
        body["retryAfter"] = retry_after
    body["timestamp"] = timezone.now().isoformat().replace("+00:00", "Z")
    body["requestId"] = current_request_id()
    return body


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"success": False, "error": error_object(code, message, **extra)}


def mark_envelope(response: Any) -> Any:
    """Tell ApiErrorEnvelopeMiddleware that this error response is already an envelope."""
    response.is_error_envelope = True
    return response


def error_response(
    code: str, message: str, *, status_code: int | None = None, **extra: Any
) -> JsonResponse:
    """A plain Django JSON response with the envelope, for code outside DRF views."""
    response = JsonResponse(
        error_body(code, message, **extra),
        status=status_code or ERROR_CODES[code][0],
        json_dumps_params={"separators": (",", ":")},
    )
    if extra.get("retry_after") is not None:
        response["Retry-After"] = str(extra["retry_after"])
    return mark_envelope(response)


def application_error_response(error: ApplicationError) -> JsonResponse:
    """The envelope for an ApplicationError raised outside a DRF view (e.g. in middleware)."""
    return error_response(
        error.error_code,
        str(error.detail),
        status_code=error.status_code,
        details=error.details,
        retry_after=error.retry_after,
    )


def _as_api_exception(exc: BaseException) -> exceptions.APIException | None:
    """Map non-DRF exceptions that have a defined client-facing meaning."""
    if isinstance(exc, exceptions.APIException):
        return exc
    if isinstance(exc, Http404):
        return exceptions.NotFound()
    if isinstance(exc, PermissionDenied):
        return exceptions.PermissionDenied()
    if isinstance(exc, RequestDataTooBig):
        return PayloadTooLarge()
    if isinstance(exc, OperationalError | InterfaceError):
        logger.error("Database unavailable: %s", exc)
        return DatabaseUnavailable(retry_after=OUTAGE_RETRY_AFTER_SECONDS)
    if isinstance(exc, REDIS_OUTAGES):
        logger.error("Redis unavailable: %s", exc)
        return RedisUnavailable(retry_after=OUTAGE_RETRY_AFTER_SECONDS)
    return None


def _code_and_message(exc: exceptions.APIException) -> tuple[str, str, Any]:
    if isinstance(exc, ApplicationError):
        return exc.error_code, str(exc.detail), exc.details
    if isinstance(exc, exceptions.ValidationError):
        details = exc.detail if isinstance(exc.detail, dict) else {NON_FIELD_ERRORS: exc.detail}
        return "INVALID_INPUT", _first_validation_message(details), details
    if isinstance(exc, exceptions.ParseError):
        return "INVALID_INPUT", f"Malformed request body: {exc.detail}", None
    if isinstance(exc, exceptions.NotAuthenticated):
        return "UNAUTHORIZED", "Authentication credentials were not provided.", None
    if isinstance(exc, exceptions.AuthenticationFailed):
        return "UNAUTHORIZED", "Invalid or expired authentication token.", None
    code = CODE_FOR_STATUS.get(exc.status_code, "INTERNAL_ERROR")
    detail = exc.detail if isinstance(exc.detail, str) else ERROR_CODES[code][1]
    return code, str(detail), None


def _first_validation_message(details: Any, path: str = "") -> str:
    if isinstance(details, dict):
        for key, value in details.items():
            return _first_validation_message(value, f"{path}.{key}" if path else str(key))
    if isinstance(details, list) and details:
        return _first_validation_message(details[0], path)
    path = path.removesuffix(NON_FIELD_ERRORS).removesuffix(".")
    prefix = f"{path}: " if path else ""
    return f"{prefix}{details}" if details else "Request validation failed."


def _log_security_event(event: str, code: str, message: str, context: dict[str, Any]) -> None:
    request = context.get("request")
    http_request = getattr(request, "_request", None)
    if http_request is None:
        security_event(event, message, code=code)
        return
    security_event(
        event,
        message,
        code=code,
        route=request_route(http_request),
        user_id=request_user_id(http_request),
        client_ip=client_ip(http_request),
    )


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response:
    """DRF's EXCEPTION_HANDLER: every exception raised in an API view becomes the envelope.

    Unknown exceptions are logged with their traceback and answered with INTERNAL_ERROR; the
    client never sees internals, whatever DEBUG says.
    """
    api_exc = _as_api_exception(exc)
    if api_exc is None:
        logger.exception("Unhandled error in API view", exc_info=exc)
        return mark_envelope(
            Response(
                error_body("INTERNAL_ERROR", "An unexpected error occurred."),
                status=status.HTTP_500_INTERNAL_SERVER_ERROR,
            )
        )

    code, message, details = _code_and_message(api_exc)
    event = getattr(api_exc, "security_event", None)
    if event:
        _log_security_event(event, code, message, context)
    retry_after: int | None = getattr(api_exc, "retry_after", None)
    if isinstance(api_exc, exceptions.Throttled):
        wait = getattr(api_exc, "wait", None)
        retry_after = math.ceil(wait) if wait is not None else 60
        message = f"Too many requests. Retry in {retry_after} seconds."

    headers: dict[str, str] = {}
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    auth_header = getattr(api_exc, "auth_header", None)
    if auth_header:
        headers["WWW-Authenticate"] = auth_header

    return mark_envelope(
        Response(
            error_body(code, message, details=details, retry_after=retry_after),
            status=api_exc.status_code,
            headers=headers,
        )
    )
