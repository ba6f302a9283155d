"""Fixed-window rate limits (DESIGN.md §4): per user, per client IP, per server instance.

A request checked against a limit counts in the window `floor(now / window_seconds)` of that
limit and identity; the counter expires with the window. One call checks several limits at
once and is all-or-nothing: if any of them is used up, the request is refused and counted
nowhere, so a client hammering past its own limit does not also use up the instance-wide
budget everyone shares.

With `REDIS_URL`, one Lua script (EVALSHA) reads and increments every counter in a single
round trip: increments and expiry are atomic and shared by every process on every node.
Without it, the counters live in this process only (the embedded, single-process mode);
several processes would each allow the full limit.

Window numbers come from this machine's clock, so nodes need synchronised clocks (NTP); a
skew only moves their window edges by that much.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import math
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django_redis import get_redis_connection
from django_redis.exceptions import ConnectionInterrupted
from redis.exceptions import RedisError

from scoreboard import metrics
from scoreboard.config import Rate
from scoreboard.errors import OUTAGE_RETRY_AFTER_SECONDS, RateLimited, RedisUnavailable
from scoreboard.redis_scripts import registered

logger = logging.getLogger(__name__)

SCORE_UPDATE_SCOPE = "score-update"
AUTH_SCOPE = "auth"
API_IP_SCOPE = "api-ip"
API_INSTANCE_SCOPE = "api-instance"

_MESSAGES = {
    SCORE_UPDATE_SCOPE: "Too many score update requests. Please wait before trying again.",
    AUTH_SCOPE: "Too many authentication attempts. Please wait before trying again.",
}
# Identities kept readable in keys (IPs, networks, UUIDs, host names); anything else is hashed.
_PLAIN_IDENTITY = re.compile(r"[A-Za-z0-9._:/-]{1,64}")
# An IPv6 subscriber is normally given a whole /64 and can use any address in it.
IPV6_CLIENT_PREFIX = 64
# Any Redis failure (unreachable, timeout, read-only replica, out of memory) is an outage here.
STORE_OUTAGES = (RedisError, ConnectionInterrupted)
_STATES_ATTRIBUTE = "rate_limit_states"
RATE_LIMIT_HEADERS = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset")

# KEYS: the counters; ARGV: limit and expiry (seconds) of each, in pairs. Returns each
# counter's value followed by 1 if the request was counted, 0 if it was refused.
_HIT_SCRIPT = """
local counts, refused = {}, false
for i, key in ipairs(KEYS) do
  counts[i] = tonumber(redis.call('GET', key) or '0')
  if counts[i] >= tonumber(ARGV[2 * i - 1]) then refused = true end
end
if not refused then
  for i, key in ipairs(KEYS) do
    counts[i] = redis.call('INCR', key)
    if counts[i] == 1 then redis.call('EXPIRE', key, ARGV[2 * i]) end
  end
end
counts[#KEYS + 1] = refused and 0 or 1
return counts
"""

# Seconds since the epoch; a module attribute so tests can move time.
clock: Callable[[], float] = time.time


@dataclass(frozen=True)
class RateLimit:
    """A named limit: at most `limit` requests per fixed window of `window_seconds`."""

    scope: str
    limit: int
    window_seconds: int


@dataclass(frozen=True)
class RateLimitState:
    """One limit as it stood for one request (what the X-RateLimit-* headers report)."""

    scope: str
    limit: int
    remaining: int
    reset_seconds: int
    allowed: bool


@dataclass(frozen=True)
class _Counter:
    key: str
    limit: int
    ttl: int


def score_update_limit() -> RateLimit:
    """Score updates per user (SCOREBOARD_RATE_SCORE_UPDATES)."""
    return _from_setting(SCORE_UPDATE_SCOPE, settings.SCOREBOARD_RATE_SCORE_UPDATES)


def auth_limit() -> RateLimit:
    """Register, token and refresh per client IP (SCOREBOARD_AUTH_RATE)."""
    return _from_setting(AUTH_SCOPE, settings.SCOREBOARD_AUTH_RATE)


def api_ip_limit() -> RateLimit:
    """Every `/api/` request per client IP (SCOREBOARD_RATE_API_PER_IP)."""
    return _from_setting(API_IP_SCOPE, settings.SCOREBOARD_RATE_API_PER_IP)


def api_instance_limit() -> RateLimit:
    """Every `/api/` request per server instance (SCOREBOARD_RATE_API_PER_INSTANCE)."""
    return _from_setting(API_INSTANCE_SCOPE, settings.SCOREBOARD_RATE_API_PER_INSTANCE)


def ip_identity(ip: str) -> str:
    """Who a per-IP limit counts: the address, or for IPv6 its /64, so that hopping between
    the addresses of one's own block escapes nothing."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if address.version == 6:
        return str(ipaddress.ip_network((address, IPV6_CLIENT_PREFIX), strict=False))
    return ip


def _from_setting(scope: str, rate: Rate) -> RateLimit:
    return RateLimit(scope, rate.limit, rate.window_seconds)


def hit(checks: Sequence[tuple[RateLimit, str]]) -> list[RateLimitState]:
    """Count one request against every (limit, identity) pair, in one atomic step.

    Raises one of STORE_OUTAGES when Redis is configured and fails.
    """
    now = clock()
    windows = [math.floor(now / limit.window_seconds) for limit, _ in checks]
    counters = [
        _Counter(_key(limit, identity, window), limit.limit, limit.window_seconds)
        for (limit, identity), window in zip(checks, windows, strict=True)
    ]
    counts, counted = _redis_hit(counters) if settings.REDIS_URL else _local.hit(counters, now)
    return [
        _state(limit, count, counted, reset=(window + 1) * limit.window_seconds - now)
        for (limit, _), count, window in zip(checks, counts, windows, strict=True)
    ]


def enforce(request: Any, checks: Sequence[tuple[RateLimit, str]], *, fail_closed: bool) -> None:
    """Count the request; raise RateLimited (429) if any limit is used up.

    The states are kept on the request for the X-RateLimit-* headers. If the store is down,
    `fail_closed` refuses with RedisUnavailable (503, Retry-After); otherwise the request
    goes through unlimited and a warning is logged.
    """
    try:
        states = hit(checks)
    except STORE_OUTAGES as error:
        if fail_closed:
            logger.error("Rate-limit store unavailable, refusing the request: %s", error)
            raise RedisUnavailable(retry_after=OUTAGE_RETRY_AFTER_SECONDS) from error
        logger.warning("Rate-limit store unavailable, not limiting the request: %s", error)
        return
    http_request = getattr(request, "_request", request)
    setattr(http_request, _STATES_ATTRIBUTE, [*recorded_states(http_request), *states])
    refused = [state for state in states if not state.allowed]
    for state in refused:
        metrics.RATE_LIMIT_HITS.labels(limit=state.scope).inc()
    if refused:
        blocking = max(refused, key=lambda state: state.reset_seconds)
        raise RateLimited(_MESSAGES.get(blocking.scope), retry_after=blocking.reset_seconds)


def recorded_states(request: Any) -> list[RateLimitState]:
    """Every state `enforce` recorded on this request so far."""
    states: list[RateLimitState] = getattr(
        getattr(request, "_request", request), _STATES_ATTRIBUTE, []
    )
    return states


def rate_limit_headers(request: Any) -> dict[str, str]:
    """X-RateLimit-* from the most restrictive recorded state (fewest remaining, then the
    latest reset); empty when the request was not rate-limited."""
    states = recorded_states(request)
    if not states:
        return {}
    tightest = min(states, key=lambda state: (state.remaining, -state.reset_seconds))
    values = (tightest.limit, tightest.remaining, tightest.reset_seconds)
    return {name: str(value) for name, value in zip(RATE_LIMIT_HEADERS, values, strict=True)}


def reset_local_counters() -> None:
    """Forget every in-process counter (tests; Redis counters go with the cache's flush)."""
    _local.reset()


def _state(limit: RateLimit, count: int, counted: bool, *, reset: float) -> RateLimitState:
    # A refused request was not counted: `count` is the value it found.
    allowed = counted or count < limit.limit
    return RateLimitState(
        scope=limit.scope,
        limit=limit.limit,
        remaining=max(0, limit.limit - count),
        reset_seconds=max(1, math.ceil(reset)),
        allowed=allowed,
    )


def _key(limit: RateLimit, identity: str, window: int) -> str:
    if not _PLAIN_IDENTITY.fullmatch(identity):
        identity = "sha256-" + hashlib.sha256(identity.encode()).hexdigest()[:32]
    return f"{settings.REDIS_KEY_PREFIX}:rl:{limit.scope}:{identity}:{window}"


def _redis_hit(counters: Sequence[_Counter]) -> tuple[list[int], bool]:
    connection = get_redis_connection("default")
    script = registered(connection, _HIT_SCRIPT)
    reply = script(
        keys=[counter.key for counter in counters],
        args=[value for counter in counters for value in (counter.limit, counter.ttl)],
    )
    *counts, counted = (int(value) for value in reply)
    return counts, bool(counted)


class _LocalCounters:
    """The same all-or-nothing counting for one process, under a lock."""

    PRUNE_EVERY_SECONDS = 10.0

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, tuple[int, float]] = {}  # key → (count, expires at)
        self._next_prune = 0.0

    def hit(self, counters: Sequence[_Counter], now: float) -> tuple[list[int], bool]:
        with self._lock:
            self._prune(now)
            counts = [self._current(counter.key, now) for counter in counters]
            if any(count >= counter.limit for count, counter in zip(counts, counters, strict=True)):
                return counts, False
            for index, counter in enumerate(counters):
                counts[index] += 1
                expires_at = (
                    now + counter.ttl if counts[index] == 1 else self._counts[counter.key][1]
                )
                self._counts[counter.key] = (counts[index], expires_at)
            return counts, True

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()
            self._next_prune = 0.0

    def _current(self, key: str, now: float) -> int:
        count, expires_at = self._counts.get(key, (0, now))
        return count if expires_at > now else 0

    def _prune(self, now: float) -> None:
        if now < self._next_prune:
            return
        self._counts = {key: entry for key, entry in self._counts.items() if entry[1] > now}
        self._next_prune = now + self.PRUNE_EVERY_SECONDS


_local = _LocalCounters()
