"""Cluster-wide broadcast state: which channels changed, the per-channel throttle, the sequence
numbers and the last board each channel published.

With Redis every node shares it, so the throttle and `seq` hold across the cluster; without
Redis it lives in this process (the embedded default is one process).

A publication takes two steps. `claim_due` hands out the channels that changed and whose
interval has passed, each with a claim id and the board published last; the claimant reads
the board and `commit`s it, which takes the next `seq` only if no later claim replaced its
own (a slow node can never publish an older board after a newer one).

A dirty mark keeps the time of the first change since the channel's last claim, so the
publication can tell how long the change waited (`scoreboard_live_broadcast_lag_seconds`).
Times are wall-clock seconds since the epoch: with Redis, the marking node's clock.
"""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any, Protocol

from django.conf import settings

from leaderboard.backends.redis import as_text, connection
from scoreboard.redis_scripts import registered


@dataclass(frozen=True)
class Claim:
    channel: str
    claim_id: str
    # The board this channel last published, as JSON text; None before the first.
    previous: str | None
    # When the channel was first marked changed since its previous claim (epoch seconds).
    marked_at: float


class BroadcastState(Protocol):
    def mark_dirty(self, channels: list[str], *, marked_at: float | None = None) -> None:
        """Mark channels changed, at `marked_at` (default: now) unless already marked."""

    def claim_due(self, gate_ms: int) -> list[Claim]:
        """Claim the changed channels whose gate is open, closing it for `gate_ms`."""

    def commit(self, claim: Claim, board_json: str) -> int | None: ...

    def current_seqs(self, channels: list[str]) -> list[int]: ...


class LocalBroadcastState:
    """The state of a single process. Receivers mark channels from request threads while the
    hub claims from the event loop, hence the lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._dirty: dict[str, float] = {}  # channel → first mark
        self._gate_until: dict[str, float] = {}
        self._claims: dict[str, str] = {}
        self._seq: dict[str, int] = {}
        self._last: dict[str, str] = {}
        self._claim_ids = itertools.count(1)

    def mark_dirty(self, channels: list[str], *, marked_at: float | None = None) -> None:
        at = time.time() if marked_at is None else marked_at
        with self._lock:
            for channel in channels:
                self._dirty.setdefault(channel, at)

    def claim_due(self, gate_ms: int) -> list[Claim]:
        now = time.monotonic()
        claims = []
        with self._lock:
            for channel in sorted(self._dirty):
                if self._gate_until.get(channel, 0.0) > now:
                    continue
                self._gate_until[channel] = now + gate_ms / 1000
                marked_at = self._dirty.pop(channel)
                claim_id = str(next(self._claim_ids))
                self._claims[channel] = claim_id
                claims.append(Claim(channel, claim_id, self._last.get(channel), marked_at))
        return claims

    def commit(self, claim: Claim, board_json: str) -> int | None:
        with self._lock:
            if self._claims.get(claim.channel) != claim.claim_id:
                return None
            seq = self._seq.get(claim.channel, 0) + 1
            self._seq[claim.channel] = seq
            self._last[claim.channel] = board_json
            return seq

    def current_seqs(self, channels: list[str]) -> list[int]:
        with self._lock:
            return [self._seq.get(channel, 0) for channel in channels]


# KEYS: the dirty hash (channel → first mark, ms since the epoch). ARGV: mark time, channels.
_MARK_DIRTY = """
for i = 2, #ARGV do
  redis.call('HSETNX', KEYS[1], ARGV[i], ARGV[1])
end
"""

# KEYS: the dirty hash. ARGV: key prefix, gate in ms, claim id.
# Returns a flat list: channel, first mark, previous board or false, channel, ...
_CLAIM_DUE = """
local claimed = {}
local dirty = redis.call('HGETALL', KEYS[1])
for i = 1, #dirty, 2 do
  local channel = dirty[i]
  local base = ARGV[1] .. channel
  if redis.call('SET', base .. ':gate', '1', 'NX', 'PX', ARGV[2]) then
    redis.call('HDEL', KEYS[1], channel)
    redis.call('SET', base .. ':claim', ARGV[3])
    table.insert(claimed, channel)
    table.insert(claimed, dirty[i + 1])
    table.insert(claimed, redis.call('GET', base .. ':last'))
  end
end
return claimed
"""

# KEYS: claim, seq and last-board keys of one channel. ARGV: claim id, board JSON.
_COMMIT = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return false
end
redis.call('SET', KEYS[3], ARGV[2])
return redis.call('INCR', KEYS[2])
"""


class RedisBroadcastState:
    def __init__(self, client: Any = None) -> None:
        self.client = client or connection()
        self._mark_dirty = registered(self.client, _MARK_DIRTY)
        self._claim_due = registered(self.client, _CLAIM_DUE)
        self._commit = registered(self.client, _COMMIT)

    @staticmethod
    def _base() -> str:
        return f"{settings.REDIS_KEY_PREFIX}:live:"

    def _dirty_key(self) -> str:
        # A hash since marks carry their time; the set of earlier versions was `…:dirty`.
        return self._base() + "dirty-since"

    def mark_dirty(self, channels: list[str], *, marked_at: float | None = None) -> None:
        if channels:
            at_ms = round((time.time() if marked_at is None else marked_at) * 1000)
            self._mark_dirty(keys=[self._dirty_key()], args=[at_ms, *channels])

    def claim_due(self, gate_ms: int) -> list[Claim]:
        claim_id = uuid.uuid4().hex
        reply = self._claim_due(keys=[self._dirty_key()], args=[self._base(), gate_ms, claim_id])
        return [
            Claim(
                as_text(channel),
                claim_id,
                as_text(previous) if previous else None,
                int(marked_ms) / 1000,
            )
            for channel, marked_ms, previous in zip(
                reply[::3], reply[1::3], reply[2::3], strict=True
            )
        ]

    def commit(self, claim: Claim, board_json: str) -> int | None:
        base = self._base() + claim.channel
        seq = self._commit(
            keys=[f"{base}:claim", f"{base}:seq", f"{base}:last"],
            args=[claim.claim_id, board_json],
        )
        return None if seq is None else int(seq)

    def current_seqs(self, channels: list[str]) -> list[int]:
        """Each channel's `seq`, in one round trip (0 where Redis has none: never published,
        or lost with Redis's data)."""
        if not channels:
            return []
        values = self.client.mget([f"{self._base()}{channel}:seq" for channel in channels])
        return [int(value or 0) for value in values]


_local_state = LocalBroadcastState()


def broadcast_state() -> BroadcastState:
    if settings.REDIS_URL:
        return RedisBroadcastState()
    return _local_state


def reset_local_state() -> None:
    """Forget the in-process state (tests)."""
    global _local_state
    _local_state = LocalBroadcastState()
