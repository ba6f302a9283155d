"""Request ids, the body size limit, the `/api/` error envelope guard and rate limits."""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.http import HttpRequest, HttpResponseBase, JsonResponse

from scoreboard import errors, ratelimit
from scoreboard.client_ip import client_ip
from scoreboard.middleware_base import BeforeAfterMiddleware
from scoreboard.request_context import (
    bind_request_id,
    request_route,
    request_user_id,
    unbind_request_id,
)

logger = logging.getLogger("scoreboard.requests")

REQUEST_ID_HEADER = "X-Request-ID"
# An incoming id is echoed only when it cannot smuggle anything into logs or headers.
_SAFE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
API_PREFIX = "/api/"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})


def request_id_from(incoming: str | None) -> str:
    if incoming and _SAFE_REQUEST_ID.fullmatch(incoming):
        return incoming
    return uuid.uuid4().hex


class RequestIdMiddleware(BeforeAfterMiddleware):
    """Give every request an id (echoed from X-Request-ID when sane), log one line per request
    with it, and return it in the X-Request-ID header."""

    def before(self, request: HttpRequest) -> None:
        request_id = request_id_from(request.headers.get(REQUEST_ID_HEADER))
        request.request_id = request_id  # type: ignore[attr-defined]
        request._request_id_binding = bind_request_id(request_id)  # type: ignore[attr-defined]
        request._started_at = time.perf_counter()  # type: ignore[attr-defined]

    def cleanup(self, request: HttpRequest) -> None:
        unbind_request_id(request._request_id_binding)  # type: ignore[attr-defined]

    def after(self, request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
        request_id = request.request_id  # type: ignore[attr-defined]
        response[REQUEST_ID_HEADER] = request_id
        duration_ms = (time.perf_counter() - request._started_at) * 1000  # type: ignore[attr-defined]
        logger.info(
            "%s %s %s %.1fms",
            request.method,
            request.path,
            response.status_code,
            duration_ms,
            extra={
                "request_id": request_id,
                "method": request.method,
                "path": request.path,
                "route": request_route(request),
                "status": response.status_code,
                "duration_ms": round(duration_ms, 1),
                "user_id": request_user_id(request),
                "client_ip": client_ip(request),
            },
        )
        return response


class ApiErrorEnvelopeMiddleware(BeforeAfterMiddleware):
    """Refuse oversized bodies, and on `/api/` paths make sure every error is the envelope.

    DRF views already answer with the envelope; this catches what Django produces around
    them (unknown routes, bad Host, a crash in other middleware, DEBUG's technical pages),
    so no HTML or internals ever reach an API client.
    """

    def before(self, request: HttpRequest) -> HttpResponseBase | None:
        return self._refuse_oversized(request)

    def after(self, request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
        return self._envelope(request, response)

    @staticmethod
    def _refuse_oversized(request: HttpRequest) -> HttpResponseBase | None:
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return errors.error_response("INVALID_INPUT", "Invalid Content-Length header.")
        if length > settings.MAX_REQUEST_BODY_BYTES:
            return payload_too_large_response()
        return None

    @staticmethod
    def _envelope(request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
        if (
            response.status_code < 400
            or not request.path.startswith(API_PREFIX)
            or getattr(response, "is_error_envelope", False)
        ):
            return response
        status_code = response.status_code
        code = errors.CODE_FOR_STATUS.get(
            status_code, "INTERNAL_ERROR" if status_code >= 500 else "INVALID_INPUT"
        )
        replacement = errors.error_response(
            code, errors.ERROR_CODES[code][1], status_code=status_code
        )
        for header in ("Allow", "Retry-After", "WWW-Authenticate", *ratelimit.RATE_LIMIT_HEADERS):
            if header in response:
                replacement[header] = response[header]
        return replacement


class RateLimitMiddleware(BeforeAfterMiddleware):
    """Per client IP and per instance limits on every `/api/` request, before authentication,
    so a flood of bad tokens is limited like any other; X-RateLimit-* on the way out.

    If the store is down, writes are refused (503) and reads go through. Under ASGI the
    Redis round trip (a synchronous call) runs in a worker thread, never on the event loop.
    """

    def before(self, request: HttpRequest) -> HttpResponseBase | None:
        return self._limit(request) if request.path.startswith(API_PREFIX) else None

    async def abefore(self, request: HttpRequest) -> HttpResponseBase | None:
        if not request.path.startswith(API_PREFIX):
            return None
        if settings.REDIS_URL:  # a network round trip
            return await sync_to_async(self._limit, thread_sensitive=False)(request)
        return self._limit(request)

    @staticmethod
    def _limit(request: HttpRequest) -> HttpResponseBase | None:
        checks = [
            (ratelimit.api_ip_limit(), ratelimit.ip_identity(client_ip(request))),
            (ratelimit.api_instance_limit(), settings.SCOREBOARD_INSTANCE_ID),
        ]
        try:
            ratelimit.enforce(request, checks, fail_closed=request.method not in SAFE_METHODS)
        except errors.ApplicationError as error:
            return errors.application_error_response(error)
        return None

    def after(self, request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
        for header, value in ratelimit.rate_limit_headers(request).items():
            response[header] = value
        return response


def payload_too_large_response() -> JsonResponse:
    limit_kib = settings.MAX_REQUEST_BODY_BYTES // 1024
    return errors.error_response(
        "PAYLOAD_TOO_LARGE", f"The request body is larger than {limit_kib} KiB."
    )


ASGIApp = Callable[
    [dict[str, Any], Callable[[], Awaitable[dict[str, Any]]], Callable[..., Awaitable[None]]],
    Awaitable[None],
]


class RequestBodyLimit:
    """ASGI wrapper that stops reading an HTTP body once it passes the limit.

    Django's ASGI handler would otherwise spool any body, however large, before a middleware
    could look at it. Bodies within the limit are buffered (they are small) and replayed.
    """

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(scope, send, headers)
            return

        buffered: list[dict[str, Any]] = []
        size = 0
        while True:
            message = await receive()
            buffered.append(message)
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            if size > self.max_bytes:
                await self._refuse(scope, send, headers)
                return
            if not message.get("more_body", False):
                break

        async def replay() -> dict[str, Any]:
            if buffered:
                return buffered.pop(0)
            return await receive()

        await self.app(scope, replay, send)

    @staticmethod
    async def _refuse(scope: dict[str, Any], send: Any, headers: dict[bytes, bytes]) -> None:
        incoming = headers.get(REQUEST_ID_HEADER.lower().encode(), b"").decode("latin-1")
        request_id = request_id_from(incoming)
        token = bind_request_id(request_id)
        try:
            response = payload_too_large_response()
            body = response.content
        finally:
            unbind_request_id(token)
        logger.warning(
            "%s %s 413 body over limit",
            scope.get("method"),
            scope.get("path"),
            extra={"request_id": request_id},
        )
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (REQUEST_ID_HEADER.lower().encode(), request_id.encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
