"""The per-process fan-out hub.

Channels' usual path gives every consumer its own channel-layer message to decode and encode,
which caps a process near 2,000-2,600 deliveries/s (PERFORMANCE-NOTES.md). Instead each process
joins a channel's group once, through one channel-layer inbox, and hands every batch it
receives, encoded once, to the local subscribers of that channel. Subscribers queue what they
are given and close themselves when they fall behind, so a slow client never grows memory.

The hub also runs this process's share of the cluster-wide throttled flush, while it has
local subscribers: any process with listeners may claim a changed channel, and exactly one
does per interval. And it rechecks the users of all the process's connections at each
heartbeat in one query, instead of one query (and one thread hop) per connection.

Redis pub/sub keeps nothing for a subscriber that is not connected: a batch published while
this process's subscription is down (Redis restarting, a network blip; the channel layer
re-subscribes about a second later) never arrives, and if the board then stays still its
local clients would show the old board indefinitely. So the hub also compares, every few
intervals, each channel's cluster-wide `seq` with that of the last batch it dispatched; a
channel that stays different for a whole check gets a fresh snapshot for its local
subscribers (`scoreboard_live_resyncs_total`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.utils import timezone

from realtime import auth
from realtime.boards import LiveChannel, live_channel
from realtime.broadcast import (
    flush_changed_channels,
    flush_tick_ms,
    mark_new_buckets,
    snapshot_batch,
)
from realtime.frames import Batch
from realtime.state import broadcast_state
from scoreboard import metrics

logger = logging.getLogger(__name__)

_ERROR_LOG_INTERVAL_SECONDS = 10.0


class Subscriber(Protocol):
    def deliver(self, batch: Batch) -> None:
        """Take a batch without blocking (queue it, or give up when the queue is full)."""


class Mailbox:
    """One client's bounded queue of batches. A subscription's snapshot goes first: what is
    broadcast while it is being read waits, and only batches newer than it follow it. A full
    queue calls `on_overflow` once and takes nothing more."""

    def __init__(self, on_overflow: Callable[[], None]) -> None:
        self.queue: asyncio.Queue[Batch] = asyncio.Queue(settings.SCOREBOARD_LIVE_SEND_QUEUE)
        self.overflowed = False
        self._on_overflow = on_overflow
        self._awaiting_snapshot: dict[str, list[Batch]] = {}

    def deliver(self, batch: Batch) -> None:
        if self.overflowed:
            return
        waiting = self._awaiting_snapshot.get(batch.channel)
        if waiting is not None and len(waiting) < self.queue.maxsize:
            waiting.append(batch)
            return
        if waiting is None:
            try:
                self.queue.put_nowait(batch)
                return
            except asyncio.QueueFull:
                pass
        self.overflowed = True
        self._on_overflow()

    async def deliver_snapshot(
        self, channel: LiveChannel, read: Callable[[LiveChannel], Awaitable[Batch]]
    ) -> None:
        """Queue `read(channel)` ahead of the broadcasts that race with it."""
        waiting: list[Batch] = []
        self._awaiting_snapshot[channel.name] = waiting
        try:
            snapshot = await read(channel)
        finally:
            del self._awaiting_snapshot[channel.name]
        for batch in [snapshot, *(batch for batch in waiting if batch.seq > snapshot.seq)]:
            self.deliver(batch)


class Hub:
    def __init__(self, layer: Any) -> None:
        self.layer = layer
        self.loop = asyncio.get_running_loop()
        self._members: dict[str, set[Subscriber]] = defaultdict(set)
        # Connection → (its token's claims, what to do once its user may no longer listen).
        self._watched: dict[object, tuple[dict[str, Any], Callable[[], None]]] = {}
        self._membership = asyncio.Lock()
        self._inbox: str | None = None
        self._ready = asyncio.Event()
        # Channel → `seq` of the last batch dispatched to its local subscribers.
        self._dispatched: dict[str, int] = {}
        self._tasks = [
            self.loop.create_task(self._receive_forever(), name="live-hub-receive"),
            self.loop.create_task(self._flush_forever(), name="live-hub-flush"),
            self.loop.create_task(self._recheck_forever(), name="live-hub-recheck"),
            self.loop.create_task(self._resync_forever(), name="live-hub-resync"),
        ]
        self._error_logged_at = 0.0

    def subscriber_count(self, channel: str | None = None) -> int:
        if channel is not None:
            return len(self._members.get(channel, ()))
        return sum(len(members) for members in self._members.values())

    async def join(self, channel: LiveChannel, subscriber: Subscriber) -> None:
        """Add a local subscriber; the first one joins the channel's group for this process.
        Raises (and adds nobody) when the channel layer cannot be reached."""
        await self._ready.wait()
        async with self._membership:
            members = self._members[channel.name]
            if not members:
                try:
                    await self.layer.group_add(channel.group, self._inbox)
                except Exception:
                    del self._members[channel.name]
                    raise
                await self._note_current_seq(channel.name)
            members.add(subscriber)

    async def leave(self, channel: LiveChannel, subscriber: Subscriber) -> None:
        """Remove a local subscriber, whatever state the channel layer is in."""
        async with self._membership:
            members = self._members.get(channel.name)
            if members is None or subscriber not in members:
                return
            members.discard(subscriber)
            if members:
                return
            del self._members[channel.name]
            self._dispatched.pop(channel.name, None)
            try:
                await self.layer.group_discard(channel.group, self._inbox)
            except Exception as error:
                # Batches for the group are still received, and dropped: no local member.
                self._log_error("group_discard", error)

    def watch(
        self, connection: object, claims: dict[str, Any], on_refused: Callable[[], None]
    ) -> None:
        """Recheck `connection`'s user every heartbeat, with every other connection of this
        process in one query; `on_refused` once the user may no longer listen (deactivated,
        erased, password changed)."""
        self._watched[connection] = (claims, on_refused)

    def unwatch(self, connection: object) -> None:
        self._watched.pop(connection, None)

    def dispatch(self, batch: Batch) -> None:
        self._dispatched[batch.channel] = batch.seq
        for subscriber in list(self._members.get(batch.channel, ())):
            subscriber.deliver(batch)

    async def stop(self) -> None:
        """Cancel the hub's tasks, again if need be: a cancellation that lands while the
        Redis client is connecting can be swallowed by it."""
        for _ in range(20):
            pending = [task for task in self._tasks if not task.done()]
            if not pending:
                return
            for task in pending:
                task.cancel()
            await asyncio.wait(pending, timeout=0.5)
        logger.error("Live hub tasks did not stop: %r", pending)

    async def _receive_forever(self) -> None:
        self._inbox = await self.layer.new_channel()
        self._ready.set()
        while True:
            try:
                message = await self.layer.receive(self._inbox)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                self._log_error("receive", error)
                await asyncio.sleep(1)
                continue
            if message.get("type") == "live.batch":
                self.dispatch(Batch.from_message(message))

    async def _flush_forever(self) -> None:
        tick = flush_tick_ms() / 1000
        checked_at = timezone.now()
        while True:
            await asyncio.sleep(tick)
            if not self._members:
                continue
            now = timezone.now()
            try:
                publications = await database_sync_to_async(_flush)(checked_at, now)
                checked_at = now
                for channel, batch in publications:
                    await self.layer.group_send(channel.group, batch.as_message())
            except asyncio.CancelledError:
                raise
            except Exception as error:
                self._log_error("flush", error)

    async def _recheck_forever(self) -> None:
        while True:
            await asyncio.sleep(settings.SCOREBOARD_WS_HEARTBEAT_SECONDS)
            watched = list(self._watched.items())
            if not watched:
                continue
            try:
                refused = await database_sync_to_async(auth.recheck_many)(
                    [claims for _, (claims, _) in watched]
                )
            except asyncio.CancelledError:
                raise
            except Exception as error:
                # Checked again at the next beat: an outage does not end the connections.
                self._log_error("recheck", error)
                continue
            for (connection, (_, on_refused)), gone in zip(watched, refused, strict=True):
                if gone and connection in self._watched:
                    del self._watched[connection]
                    on_refused()

    async def _note_current_seq(self, name: str) -> None:
        """Where a newly joined channel stands, for the resync checks to compare with (what
        its first subscriber's snapshot shows). Read at the first check instead if Redis
        cannot be reached now."""
        try:
            [seq] = await database_sync_to_async(broadcast_state().current_seqs)([name])
        except asyncio.CancelledError:
            raise
        except Exception as error:
            self._log_error("seq read", error)
            return
        self._dispatched.setdefault(name, seq)

    async def _resync_forever(self) -> None:
        # Channel → the cluster-wide `seq` it differed at, at the previous check.
        differing: dict[str, int] = {}
        while True:
            await asyncio.sleep(resync_check_seconds())
            channels = list(self._members)
            if not channels:
                continue
            try:
                seqs = await database_sync_to_async(broadcast_state().current_seqs)(channels)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                self._log_error("resync check", error)
                continue
            for name, seq in zip(channels, seqs, strict=True):
                if self._dispatched.setdefault(name, seq) == seq:
                    differing.pop(name, None)
                elif differing.get(name) != seq:
                    differing[name] = seq  # maybe a batch on its way: look again next time
                else:
                    del differing[name]
                    await self._resync(name)

    async def _resync(self, name: str) -> None:
        channel = live_channel(name)
        if channel is None or name not in self._members:
            return
        try:
            batch = await database_sync_to_async(snapshot_batch)(channel)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            self._log_error("resync", error)
            return
        logger.warning(
            "Live channel %s missed a publication here: resynced at seq %s", name, batch.seq
        )
        metrics.LIVE_RESYNCS.inc()
        self.dispatch(batch)

    def _log_error(self, what: str, error: Exception) -> None:
        """At most one log line per interval: in an outage every tick fails the same way."""
        now = time.monotonic()
        if now - self._error_logged_at >= _ERROR_LOG_INTERVAL_SECONDS:
            self._error_logged_at = now
            logger.error("Live hub %s failed; retrying: %r", what, error, exc_info=error)


def resync_check_seconds() -> float:
    """How often the hub compares its channels' `seq` with the cluster's: every two broadcast
    intervals, at least every second. A missed publication is made good within two checks."""
    return max(2 * settings.SCOREBOARD_BROADCAST_INTERVAL_MS / 1000, 1.0)


def _flush(checked_at: Any, now: Any) -> list[tuple[LiveChannel, Batch]]:
    mark_new_buckets(before=checked_at, now=now)
    return flush_changed_channels()


_hub: Hub | None = None


def running_hub() -> Hub:
    """This process's hub, started on first use in the running event loop."""
    global _hub
    if _hub is None or _hub.loop is not asyncio.get_running_loop():
        _hub = Hub(get_channel_layer())
    return _hub


async def stop_hub() -> None:
    global _hub
    if _hub is not None and _hub.loop is asyncio.get_running_loop():
        await _hub.stop()
    _hub = None
