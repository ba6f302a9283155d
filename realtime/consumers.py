"""`/ws/leaderboard`: live boards over WebSocket (DESIGN.md §5)."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.utils import timezone

from realtime import auth
from realtime.boards import LiveChannel, live_channel
from realtime.broadcast import OUTAGES, outage_code, snapshot_batch
from realtime.frames import encode, timestamp
from realtime.hub import Mailbox, running_hub
from scoreboard import metrics

# Application close codes (4000-4999 are ours).
CLOSE_UNKNOWN_ROUTE = 4404
CLOSE_UNAUTHORIZED = 4401
CLOSE_TOO_SLOW = 4408
CLOSE_FLOODING = 4429
# RFC 6455 "Try Again Later": a service the connection needs is down.
CLOSE_TRY_AGAIN_LATER = 1013
MAX_FRAME_BYTES = 64 * 1024


class UnknownRouteConsumer(AsyncWebsocketConsumer):
    """Refuses the handshake for paths no other consumer matched, instead of the router
    raising (which servers log as an error and answer with 500)."""

    async def connect(self) -> None:
        await self.close(code=CLOSE_UNKNOWN_ROUTE)


class LeaderboardConsumer(AsyncWebsocketConsumer):
    """One client's live boards. Broadcasts reach it through this process's hub, queued in
    a bounded queue that one writer task drains; the socket's own replies (pong, errors) are
    sent directly."""

    # No channel-layer channel per socket: the hub listens once for the whole process.
    channel_layer_alias = "live-sockets-listen-through-the-hub"

    identity: auth.LiveIdentity

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.subscriptions: dict[str, LiveChannel] = {}
        self.mailbox = Mailbox(on_overflow=self._too_slow)
        self.tasks: list[asyncio.Task[None]] = []
        self.closing = False
        self.connection_metric = metrics.LiveConnectionCount(metrics.WEBSOCKET)
        self.sending_since: float | None = None
        self.window_started = time.monotonic()
        self.window_messages = 0

    async def connect(self) -> None:
        self.hub = running_hub()
        try:
            self.identity = await database_sync_to_async(auth.authenticate_connection)(self.scope)
        except (auth.CredentialRefused, *OUTAGES) as error:
            self.closing = True
            await self.accept(subprotocol=auth.offered_subprotocol(self.scope))
            refused = isinstance(error, auth.CredentialRefused)
            await self.close(code=CLOSE_UNAUTHORIZED if refused else CLOSE_TRY_AGAIN_LATER)
            return
        await self.accept(subprotocol=self.identity.subprotocol)
        self.connection_metric.open()
        self.hub.watch(self, self.identity.claims, self._refused)
        self.tasks = [
            asyncio.create_task(self._write_forever()),
            asyncio.create_task(self._heartbeat_forever()),
        ]

    async def disconnect(self, code: int) -> None:
        await self._release()

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.closing:
            return
        size = len(text_data.encode()) if text_data is not None else len(bytes_data or b"")
        if size > MAX_FRAME_BYTES or self._flooding():
            await self._shut(CLOSE_FLOODING)
            return
        message = _parse(text_data)
        if message is None:
            await self._error("INVALID_INPUT", 'Send JSON text frames: {"event": …, "data": {…}}.')
            return
        event, data = message
        if event == "ping":
            await self._reply("pong", {"timestamp": timestamp(timezone.now())})
        elif event in ("subscribe", "unsubscribe"):
            channel = live_channel(data.get("channel"))
            if channel is None:
                await self._error("INVALID_INPUT", "Unknown channel.")
            elif event == "subscribe":
                await self._subscribe(channel)
            else:
                await self._unsubscribe(channel)
        else:
            await self._error("INVALID_INPUT", "Unknown event: use subscribe, unsubscribe or ping.")

    async def _subscribe(self, channel: LiveChannel) -> None:
        held = channel.name in self.subscriptions
        if not held and len(self.subscriptions) >= settings.SCOREBOARD_WS_MAX_SUBSCRIPTIONS:
            await self._error("INVALID_INPUT", "Too many subscriptions on one connection.")
            return
        try:
            if not held:
                await self.hub.join(channel, self.mailbox)
                if self.closing:  # closed while joining: _release has already run
                    await self.hub.leave(channel, self.mailbox)
                    return
                self.subscriptions[channel.name] = channel
            # Subscribing again (after a gap in `seq`) gets a fresh snapshot too.
            await self.mailbox.deliver_snapshot(channel, database_sync_to_async(snapshot_batch))
        except OUTAGES as error:
            if self.subscriptions.pop(channel.name, None) is not None:
                await self.hub.leave(channel, self.mailbox)
            await self._error(
                outage_code(error), "The board cannot be read now; subscribe again later."
            )

    async def _unsubscribe(self, channel: LiveChannel) -> None:
        if self.subscriptions.pop(channel.name, None) is not None:
            await self.hub.leave(channel, self.mailbox)
        await self._reply("unsubscribed", {"channel": channel.name})

    async def _write_forever(self) -> None:
        while True:
            batch = await self.mailbox.queue.get()
            self.sending_since = time.monotonic()
            try:
                for text in batch.websocket_texts:
                    await self.send(text_data=text)
            except OSError:
                return  # The peer is gone; its disconnect releases the rest.
            self.sending_since = None
            metrics.LIVE_FRAMES_SENT.labels(transport=metrics.WEBSOCKET).inc(len(batch.frames))

    async def _heartbeat_forever(self) -> None:
        """Close once the token expires, or the client has not taken a frame for a whole
        heartbeat. (The hub rechecks the user for all connections at once: `_refused`.)"""
        heartbeat = settings.SCOREBOARD_WS_HEARTBEAT_SECONDS
        while True:
            until_expiry = self.identity.expires_at - time.time()
            await asyncio.sleep(max(0.0, min(heartbeat, until_expiry)))
            if time.time() >= self.identity.expires_at:
                await self._shut(CLOSE_UNAUTHORIZED)
                return
            stuck_since = self.sending_since
            if stuck_since is not None and time.monotonic() - stuck_since >= heartbeat:
                await self._shut(CLOSE_TOO_SLOW)
                return

    def _flooding(self) -> bool:
        rate = settings.SCOREBOARD_WS_CLIENT_MESSAGE_RATE
        now = time.monotonic()
        if now - self.window_started >= rate.window_seconds:
            self.window_started, self.window_messages = now, 0
        self.window_messages += 1
        return self.window_messages > rate.limit

    def _too_slow(self) -> None:
        self.tasks.append(asyncio.get_running_loop().create_task(self._shut(CLOSE_TOO_SLOW)))

    def _refused(self) -> None:
        self.tasks.append(asyncio.get_running_loop().create_task(self._shut(CLOSE_UNAUTHORIZED)))

    async def _reply(self, event: str, data: dict[str, Any]) -> None:
        await self.send(text_data=encode({"event": event, "data": data}))

    async def _error(self, code: str, message: str) -> None:
        await self._reply("error", {"code": code, "message": message})

    async def _shut(self, code: int) -> None:
        """Close with `code` and let go of everything this socket holds."""
        if self.closing:
            return
        await self._release()
        await self.close(code=code)

    async def _release(self) -> None:
        self.closing = True
        self.connection_metric.close()
        self.hub.unwatch(self)
        current = asyncio.current_task()
        for task in self.tasks:
            if task is not current:
                task.cancel()
        subscriptions, self.subscriptions = self.subscriptions, {}
        for channel in subscriptions.values():
            await self.hub.leave(channel, self.mailbox)


def _parse(text: str | None) -> tuple[str, dict[str, Any]] | None:
    """(event, data) of a well-formed client frame, else None."""
    if text is None:
        return None
    try:
        message = json.loads(text)
    except ValueError:
        return None
    if not isinstance(message, dict) or not isinstance(message.get("event"), str):
        return None
    data = message.get("data", {})
    if not isinstance(data, dict) or set(message) - {"event", "data"}:
        return None
    return message["event"], data
