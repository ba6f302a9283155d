from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from channels.db import database_sync_to_async
from django.core.handlers.asgi import ASGIRequest
from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    inline_serializer,
)
from rest_framework import serializers, status
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from realtime import auth
from realtime.boards import CHANNEL_NAME_PATTERN, LiveChannel, live_channel
from realtime.broadcast import OUTAGES, outage_code, snapshot_batch
from realtime.frames import Batch, encode
from realtime.hub import Mailbox, running_hub
from scoreboard import metrics
from scoreboard.api import success
from scoreboard.errors import InvalidInput, ServiceUnavailable, Unauthorized
from scoreboard.idempotency import idempotent
from scoreboard.openapi import success_envelope

KEEPALIVE_SECONDS = 15


class TicketView(APIView):
    @extend_schema(
        operation_id="realtime_ticket",
        request=None,
        responses={
            201: success_envelope(
                inline_serializer(
                    name="LiveTicket",
                    fields={
                        "ticket": serializers.CharField(
                            help_text="Open `/ws/leaderboard?ticket=…` with it once, within "
                            "`expiresIn` seconds."
                        ),
                        "expiresIn": serializers.IntegerField(),
                    },
                ),
                name="LiveTicketResponse",
            )
        },
    )
    @idempotent
    def post(self, request: Request) -> Response:
        issued = auth.ticket_issue(claims=dict(request.auth.payload))  # type: ignore[union-attr]
        return success(
            {"ticket": issued.ticket, "expiresIn": issued.expires_in},
            status_code=status.HTTP_201_CREATED,
        )


class LeaderboardStreamView(APIView):
    """The live channels as Server-Sent Events, for clients that cannot use WebSockets."""

    # EventSource cannot send headers: a ticket in the query stands in for the bearer token,
    # so the credential is checked in the view.
    permission_classes = (AllowAny,)

    def perform_content_negotiation(self, request: Request, force: bool = False) -> Any:
        """EventSource asks for `text/event-stream` only; refusals are still JSON."""
        return super().perform_content_negotiation(request, force=True)

    @extend_schema(
        operation_id="leaderboard_stream",
        parameters=[
            OpenApiParameter(
                "channel",
                {"type": "string", "pattern": CHANNEL_NAME_PATTERN},
                required=True,
                description="A live channel, e.g. `leaderboard.top10` (see docs/realtime.md).",
            ),
            OpenApiParameter(
                "ticket",
                description="A ticket from `POST /api/v1/realtime/ticket`, for clients that "
                "cannot send `Authorization: Bearer`.",
            ),
        ],
        responses={
            (200, "text/event-stream"): OpenApiResponse(
                OpenApiTypes.STR,
                description="`event: leaderboard.update|leaderboard.rank_change|"
                "leaderboard.new_leader|error`, `data:` the same JSON object as on the "
                "WebSocket; a comment line every 15 s keeps proxies from closing it.",
            )
        },
    )
    def get(self, request: Request) -> StreamingHttpResponse:
        if not isinstance(request._request, ASGIRequest):
            raise ServiceUnavailable("Live streams are served by the ASGI application.")
        channel = live_channel(request.query_params.get("channel"))
        if channel is None:
            raise InvalidInput.for_fields({"channel": ["Unknown channel."]})
        try:
            identity = auth.authenticate_connection(request._request.scope)
        except auth.CredentialRefused:
            raise Unauthorized() from None
        response = StreamingHttpResponse(
            _event_stream(identity, channel), content_type="text/event-stream"
        )
        response["Cache-Control"] = "no-cache"
        response["X-Accel-Buffering"] = "no"  # nginx: pass events on as they come
        return response


async def _event_stream(identity: auth.LiveIdentity, channel: LiveChannel) -> AsyncIterator[bytes]:
    """Snapshot first, then every batch for the channel, until the token expires, the user
    may no longer listen (the hub rechecks every heartbeat, as for the WebSockets), the
    client falls behind or goes away."""
    hub = running_hub()
    mailbox = Mailbox(on_overflow=lambda: None)
    refused = asyncio.Event()
    connection_metric = metrics.LiveConnectionCount(metrics.SSE)
    connection_metric.open()
    try:
        try:
            await hub.join(channel, mailbox)
            await mailbox.deliver_snapshot(channel, database_sync_to_async(snapshot_batch))
        except OUTAGES as error:
            yield _error_event(outage_code(error), "The board cannot be read; retry later.")
            return
        hub.watch(mailbox, identity.claims, refused.set)
        yield b"retry: 3000\n\n"
        while not mailbox.overflowed:
            remaining = identity.expires_at - time.time()
            if remaining <= 0:
                yield _error_event("TOKEN_EXPIRED", "The access token has expired.")
                return
            batch = await _next_batch(mailbox, refused, timeout=min(KEEPALIVE_SECONDS, remaining))
            if refused.is_set():
                yield _error_event("UNAUTHORIZED", "The user may no longer listen.")
                return
            if batch is None:
                yield b": keep-alive\n\n"
                continue
            yield batch.event_stream
            metrics.LIVE_FRAMES_SENT.labels(transport=metrics.SSE).inc(len(batch.frames))
    finally:
        connection_metric.close()
        hub.unwatch(mailbox)
        await hub.leave(channel, mailbox)


async def _next_batch(mailbox: Mailbox, refused: asyncio.Event, *, timeout: float) -> Batch | None:
    """The next batch, or None when `timeout` passes or the user is refused first."""
    if not mailbox.queue.empty():
        return mailbox.queue.get_nowait()
    got = asyncio.ensure_future(mailbox.queue.get())
    stop = asyncio.ensure_future(refused.wait())
    try:
        await asyncio.wait((got, stop), timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        got.cancel()
        stop.cancel()
    if got.done() and not got.cancelled():
        return got.result()
    return None


def _error_event(code: str, message: str) -> bytes:
    return f"event: error\ndata: {encode({'code': code, 'message': message})}\n\n".encode()
