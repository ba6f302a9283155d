"""The board index in Redis sorted sets: O(log N) ranks and pages at any size.

One sorted set per board key (board, period bucket, optional country). The score is the
total, exact while totals stay within 2^53. The tie order (who reached the score first, then
user id) is carried by the member instead, never folded into the score: when scores are
equal Redis orders members by their bytes, and the member is built so that the reverse byte
order is the board order. A hash beside each set maps user id → member and the version of the
total it holds; a write applies only when its version is newer, so writes can arrive late,
twice or out of order without corrupting the board.

The index is derived data. Reads need the board's "built" marker, which only a complete
rebuild sets: after Redis loses its data the marker is gone too, and reads fall back to the
database until `rebuild_leaderboards` (or the reconcile loop) has run.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django_redis import get_redis_connection

from leaderboard.backends.base import BoardKey, Position, Standing, ranked
from scoreboard.redis_scripts import registered
from scoring.periods import period_end

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_MAX_MICROS = 10**17 - 1
_MAX_UUID = 2**128 - 1
_MICROS_DIGITS = 17
# Buckets of a period stay in Redis this long after the period ends.
RETENTION_SECONDS = 86400
# How long a cached first page of a board lives at most (leaderboard.selectors).
PAGE_SECONDS = 60


class IndexNotReady(Exception):
    """The board has not been (re)built since Redis last started empty."""


def member_for(user_id: uuid.UUID, reached_at: datetime) -> str:
    """A fixed-width member whose reverse byte order is (earlier first, then lower id)."""
    micros = (reached_at - _EPOCH) // _MICROSECOND
    return f"{_MAX_MICROS - micros:0{_MICROS_DIGITS}d}{_MAX_UUID - user_id.int:032x}"


def decode_member(member: str) -> tuple[uuid.UUID, datetime]:
    micros = _MAX_MICROS - int(member[:_MICROS_DIGITS])
    user_id = uuid.UUID(int=_MAX_UUID - int(member[_MICROS_DIGITS:], 16))
    return user_id, _EPOCH + micros * _MICROSECOND


def set_key(key: BoardKey) -> str:
    name = f"{settings.REDIS_KEY_PREFIX}:lb:{key.board}:{key.period}:{key.period_start.isoformat()}"
    return f"{name}:{key.country}" if key.country else name


def members_key(key: BoardKey) -> str:
    return f"{set_key(key)}:m"


def version_key(key: BoardKey) -> str:
    """A counter that moves whenever the board's entries change. A cached page carries the
    value it was read at and is served only while the counter still has it. The counter
    lives at least a page's lifetime after it last moved, so it never falls back to a value
    that a page still alive was cached at."""
    return f"{set_key(key)}:v"


def profiles_version_key() -> str:
    """A counter that moves whenever a player changes what boards show of them."""
    return f"{settings.REDIS_KEY_PREFIX}:lb:profiles:v"


def page_key(key: BoardKey, *, limit: int) -> str:
    return f"{set_key(key)}:page:{limit}"


def page_versions(key: BoardKey, *, limit: int) -> tuple[str, str | None]:
    """The board's and the profiles' versions now, and the first page of `limit` entries as
    last cached (`<versions>|<JSON>`), in one round trip."""
    board, profiles, page = connection().mget(
        [version_key(key), profiles_version_key(), page_key(key, limit=limit)]
    )
    versions = f"{int(board or 0)}.{int(profiles or 0)}"
    return versions, as_text(page) if page is not None else None


def page_store(key: BoardKey, *, limit: int, versions: str, rows_json: str) -> None:
    connection().set(page_key(key, limit=limit), f"{versions}|{rows_json}", ex=PAGE_SECONDS)


def profiles_changed() -> None:
    client = connection()
    with client.pipeline(transaction=True) as pipeline:
        pipeline.incr(profiles_version_key())
        pipeline.expire(profiles_version_key(), PAGE_SECONDS)
        pipeline.execute()


def built_key(board: str) -> str:
    return f"{settings.REDIS_KEY_PREFIX}:lb:{board}:built"


def expire_at(key: BoardKey) -> int:
    """Unix time at which the bucket's keys expire (0: never)."""
    end = period_end(key.period, key.period_start)
    return 0 if end is None else int(end.timestamp()) + RETENTION_SECONDS


# KEYS: set, members hash, the set's version counter. ARGV: user id, member, score, version,
# expire-at, force, page lifetime. Applies the entry if its version is newer than the one held
# (or `force`); a score of 0 or less removes the user. Returns 1 if applied, and then moves
# the counter, which outlives the set by a page's lifetime (see `version_key`).
_WRITE = """
local held = redis.call('HGET', KEYS[2], ARGV[1])
if held then
  local sep = string.find(held, '|', 1, true)
  if ARGV[6] ~= '1' and tonumber(string.sub(held, sep + 1)) >= tonumber(ARGV[4]) then
    return 0
  end
  redis.call('ZREM', KEYS[1], string.sub(held, 1, sep - 1))
end
if tonumber(ARGV[3]) > 0 then
  redis.call('ZADD', KEYS[1], ARGV[3], ARGV[2])
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[2] .. '|' .. ARGV[4])
  if tonumber(ARGV[5]) > 0 then
    redis.call('EXPIREAT', KEYS[1], ARGV[5])
    redis.call('EXPIREAT', KEYS[2], ARGV[5])
  end
else
  redis.call('HDEL', KEYS[2], ARGV[1])
end
redis.call('INCR', KEYS[3])
if tonumber(ARGV[5]) > 0 then redis.call('EXPIREAT', KEYS[3], ARGV[5] + ARGV[7]) end
return 1
"""

# KEYS: set, built marker. ARGV: offset, limit. Returns nil when not built, else
# {count above the first entry, {member, score, ...}}.
_PAGE = """
if redis.call('EXISTS', KEYS[2]) == 0 then return false end
local stop = tonumber(ARGV[1]) + tonumber(ARGV[2]) - 1
local rows = redis.call('ZREVRANGE', KEYS[1], ARGV[1], stop, 'WITHSCORES')
local above = 0
if #rows > 0 then above = redis.call('ZCOUNT', KEYS[1], '(' .. rows[2], '+inf') end
return {above, rows}
"""

# KEYS: set, members hash, built marker. ARGV: user id. Returns nil when not built, {} when
# the user is not on the board, else {index, score, member, count above}.
_POSITION = """
if redis.call('EXISTS', KEYS[3]) == 0 then return false end
local held = redis.call('HGET', KEYS[2], ARGV[1])
if not held then return {} end
local member = string.sub(held, 1, string.find(held, '|', 1, true) - 1)
local index = redis.call('ZREVRANK', KEYS[1], member)
if not index then return {} end
local score = redis.call('ZSCORE', KEYS[1], member)
return {index, score, member, redis.call('ZCOUNT', KEYS[1], '(' .. score, '+inf')}
"""

# KEYS: set, members hash, built marker. ARGV: user id, scores. Returns nil when not built,
# else for each score the number of entries strictly above it, the user's own not counted.
_COUNT_ABOVE = """
if redis.call('EXISTS', KEYS[3]) == 0 then return false end
local own = nil
local held = redis.call('HGET', KEYS[2], ARGV[1])
if held then
  local member = string.sub(held, 1, string.find(held, '|', 1, true) - 1)
  own = tonumber(redis.call('ZSCORE', KEYS[1], member))
end
local counts = {}
for i = 2, #ARGV do
  local above = redis.call('ZCOUNT', KEYS[1], '(' .. ARGV[i], '+inf')
  if own and own > tonumber(ARGV[i]) then above = above - 1 end
  counts[#counts + 1] = above
end
return counts
"""

# KEYS: set, built marker. Returns nil when not built, else the number of entries.
_TOTAL = """
if redis.call('EXISTS', KEYS[2]) == 0 then return false end
return redis.call('ZCARD', KEYS[1])
"""


@dataclass(frozen=True)
class IndexEntry:
    """What the index should hold for one user on one board key (score 0: not on it)."""

    key: BoardKey
    user_id: uuid.UUID
    score: int
    reached_at: datetime
    version: int


def connection() -> Any:
    return get_redis_connection("default")


class RedisBoard:
    def __init__(self, client: Any = None) -> None:
        self.client = client or connection()
        self._write = registered(self.client, _WRITE)
        self._page = registered(self.client, _PAGE)
        self._position = registered(self.client, _POSITION)
        self._total = registered(self.client, _TOTAL)
        self._count_above = registered(self.client, _COUNT_ABOVE)

    # --- reads ------------------------------------------------------------------------------

    def top(self, key: BoardKey, *, offset: int, limit: int) -> list[Standing]:
        if limit <= 0:
            return []  # ZREVRANGE offset offset-1 would mean "to the end"
        reply = self._page(keys=[set_key(key), built_key(key.board)], args=[offset, limit])
        if reply is None:
            raise IndexNotReady(key.board)
        above, rows = reply
        entries = []
        for member, score in zip(rows[::2], rows[1::2], strict=True):
            user_id, reached_at = decode_member(as_text(member))
            entries.append((user_id, int(float(score)), reached_at))
        return ranked(entries, first_rank=int(above) + 1, offset=offset)

    def position(self, key: BoardKey, user_id: uuid.UUID) -> Position | None:
        reply = self._position(
            keys=[set_key(key), members_key(key), built_key(key.board)], args=[user_id.hex]
        )
        if reply is None:
            raise IndexNotReady(key.board)
        if not reply:
            return None
        index, score, member, above = reply
        _, reached_at = decode_member(as_text(member))
        return Position(
            index=int(index),
            standing=Standing(
                user_id=user_id,
                score=int(float(score)),
                rank=int(above) + 1,
                reached_at=reached_at,
            ),
        )

    def total(self, key: BoardKey) -> int:
        reply = self._total(keys=[set_key(key), built_key(key.board)])
        if reply is None:
            raise IndexNotReady(key.board)
        return int(reply)

    def ranks_for_scores(
        self, key: BoardKey, scores: Sequence[int], *, user_id: uuid.UUID
    ) -> list[int]:
        reply = self._count_above(
            keys=[set_key(key), members_key(key), built_key(key.board)],
            args=[user_id.hex, *scores],
        )
        if reply is None:
            raise IndexNotReady(key.board)
        return [1 + int(above) for above in reply]

    # --- writes -----------------------------------------------------------------------------

    def write(self, entries: Iterable[IndexEntry], *, force: bool = False) -> int:
        """Apply entries whose version is newer than the index holds (all of them when
        `force`, for visibility changes and repairs). Returns how many were applied."""
        pipeline = self.client.pipeline(transaction=False)
        for entry in entries:
            self._write(
                keys=[set_key(entry.key), members_key(entry.key), version_key(entry.key)],
                args=[
                    entry.user_id.hex,
                    member_for(entry.user_id, entry.reached_at),
                    entry.score,
                    entry.version,
                    expire_at(entry.key),
                    1 if force else 0,
                    PAGE_SECONDS,
                ],
                client=pipeline,
            )
        return sum(int(applied) for applied in pipeline.execute())

    def mark_built(self, board: str) -> None:
        self.client.set(built_key(board), datetime.now(UTC).isoformat())


def as_text(value: bytes | str) -> str:
    """Replies are bytes unless the client decodes them."""
    return value.decode() if isinstance(value, bytes) else value
