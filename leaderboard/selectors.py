"""Board reads: pages, around-me and the caller's own standing, with the players' public
details. The backend is the Redis index when `REDIS_URL` is set, with the database as its
fallback while Redis is unreachable or not yet rebuilt; otherwise the database alone. The REST
reads take totals and profiles from the read replica when there is one (leaderboard/replica.py);
every other caller reads `default`."""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS
from django.utils import timezone

from accounts.models import User, on_leaderboards
from leaderboard.backends.base import Board, BoardKey, Position, Standing
from leaderboard.backends.redis import IndexNotReady, RedisBoard, page_store, page_versions
from leaderboard.backends.sql import SqlBoard
from leaderboard.replica import read_with_failover
from scoreboard.errors import REDIS_OUTAGES
from scoring.models import ScoreTotal
from scoring.periods import DEFAULT_BOARD, Period, period_start

logger = logging.getLogger(__name__)

INDEX_UNAVAILABLE = (IndexNotReady, *REDIS_OUTAGES)


class FallbackBoard:
    """The Redis index, answered by the database whenever the index cannot answer."""

    def __init__(self, primary: Board, fallback: Board) -> None:
        self.primary = primary
        self.fallback = fallback

    def top(self, key: BoardKey, *, offset: int, limit: int) -> list[Standing]:
        try:
            return self.primary.top(key, offset=offset, limit=limit)
        except INDEX_UNAVAILABLE as error:
            _log_fallback(error)
            return self.fallback.top(key, offset=offset, limit=limit)

    def position(self, key: BoardKey, user_id: uuid.UUID) -> Position | None:
        try:
            return self.primary.position(key, user_id)
        except INDEX_UNAVAILABLE as error:
            _log_fallback(error)
            return self.fallback.position(key, user_id)

    def total(self, key: BoardKey) -> int:
        try:
            return self.primary.total(key)
        except INDEX_UNAVAILABLE as error:
            _log_fallback(error)
            return self.fallback.total(key)

    def ranks_for_scores(
        self, key: BoardKey, scores: Sequence[int], *, user_id: uuid.UUID
    ) -> list[int]:
        try:
            return self.primary.ranks_for_scores(key, scores, user_id=user_id)
        except INDEX_UNAVAILABLE as error:
            _log_fallback(error)
            return self.fallback.ranks_for_scores(key, scores, user_id=user_id)


_FALLBACK_LOG_INTERVAL_SECONDS = 10.0
_fallback_logged_at = 0.0


def _log_fallback(error: Exception) -> None:
    """Warn at most once per interval: during an outage every read falls back."""
    global _fallback_logged_at
    now = time.monotonic()
    if now - _fallback_logged_at >= _FALLBACK_LOG_INTERVAL_SECONDS:
        _fallback_logged_at = now
        logger.warning("Leaderboard index unavailable, reading the database: %r", error)


def board_backend(database: str = DEFAULT_DB_ALIAS) -> Board:
    """The board index; `database` is the alias the SQL board (or fallback) reads."""
    if settings.REDIS_URL:
        return FallbackBoard(primary=RedisBoard(), fallback=SqlBoard(database=database))
    return SqlBoard(database=database)


def all_time_ranks(
    *, user: User, scores: Sequence[int], board: str = DEFAULT_BOARD
) -> list[int | None]:
    """The all-time rank each of `scores` would give `user` on `board` (None for a total of
    zero or less, or a player kept off the boards): what a score update records as its rank
    before and after. Asked of the index, in O(log N), so the write path costs the same at
    any board size; the database counts when the index cannot answer."""
    if not user.is_on_leaderboards:
        return [None] * len(scores)
    positive = [score for score in scores if score > 0]
    ranks = iter(
        board_backend().ranks_for_scores(BoardKey(board=board), positive, user_id=user.pk)
        if positive
        else []
    )
    return [next(ranks) if score > 0 else None for score in scores]


def board_key(
    *, period: str, country: str = "", board: str = DEFAULT_BOARD, at: datetime | None = None
) -> BoardKey:
    """The key of the bucket of `period` that `at` (default: now) falls into."""
    return BoardKey(
        board=board,
        period=period,
        period_start=period_start(period, at or timezone.now()),
        country=country,
    )


@dataclass(frozen=True)
class BoardRow:
    rank: int
    user_id: uuid.UUID
    username: str
    score: int
    avatar: str
    country: str
    last_updated: datetime


@dataclass(frozen=True)
class OwnStanding:
    """The caller on a board: rank None when they are not on it (no points yet, hidden)."""

    rank: int | None
    user_id: uuid.UUID
    username: str
    score: int


@dataclass(frozen=True)
class BoardPage:
    rows: list[BoardRow]
    current_user: OwnStanding
    total_users: int


def leaderboard_page(*, key: BoardKey, offset: int, limit: int, viewer: User) -> BoardPage:
    """A page of the board, from the read replica when there is one."""
    return read_with_failover(
        lambda database: _page(
            key=key, offset=offset, limit=limit, viewer=viewer, database=database
        )
    )


def leaderboard_around(*, key: BoardKey, limit: int, viewer: User) -> BoardPage:
    """Up to `limit` entries above and below the viewer, from the read replica when there is
    one. A viewer who is not on the board would come last, so they see the last `limit`
    entries."""
    return read_with_failover(
        lambda database: _around(key=key, limit=limit, viewer=viewer, database=database)
    )


def _page(*, key: BoardKey, offset: int, limit: int, viewer: User, database: str) -> BoardPage:
    board = board_backend(database)
    if offset == 0 and settings.REDIS_URL and database == DEFAULT_DB_ALIAS:
        rows = _first_page_cached(board, key, limit=limit)
    else:
        rows = with_profiles(board.top(key, offset=offset, limit=limit), database=database)
    return BoardPage(
        rows=rows,
        current_user=_own_standing(board, key, viewer, database=database),
        total_users=board.total(key),
    )


def _first_page_cached(board: Board, key: BoardKey, *, limit: int) -> list[BoardRow]:
    """The board's first `limit` entries with their profiles, from Redis while neither the
    board nor any shown profile has changed since they were read (a first page is what most
    readers ask for, and reading it again costs two stores and a query). Pages read from a
    replica are never cached: one behind the primary would be kept as current."""
    try:
        versions, cached = page_versions(key, limit=limit)
    except REDIS_OUTAGES:
        return with_profiles(board.top(key, offset=0, limit=limit))
    if cached is not None:
        held, _, rows_json = cached.partition("|")
        if held == versions:
            return [_row_from_data(row) for row in json.loads(rows_json)]
    rows = with_profiles(board.top(key, offset=0, limit=limit))
    try:
        page_store(key, limit=limit, versions=versions, rows_json=json.dumps(_rows_data(rows)))
    except REDIS_OUTAGES as error:
        logger.warning("Board page not cached: %r", error)
    return rows


def _rows_data(rows: list[BoardRow]) -> list[dict[str, object]]:
    return [
        {
            "rank": row.rank,
            "user_id": str(row.user_id),
            "username": row.username,
            "score": row.score,
            "avatar": row.avatar,
            "country": row.country,
            "last_updated": row.last_updated.isoformat(),
        }
        for row in rows
    ]


def _row_from_data(data: dict[str, Any]) -> BoardRow:
    return BoardRow(
        rank=data["rank"],
        user_id=uuid.UUID(data["user_id"]),
        username=data["username"],
        score=data["score"],
        avatar=data["avatar"],
        country=data["country"],
        last_updated=datetime.fromisoformat(data["last_updated"]),
    )


def _around(*, key: BoardKey, limit: int, viewer: User, database: str) -> BoardPage:
    board = board_backend(database)
    total = board.total(key)
    position = board.position(key, viewer.pk)
    if position is None:
        offset, count = max(0, total - limit), min(total, limit)
    else:
        offset = max(0, position.index - limit)
        count = position.index - offset + 1 + limit
    return BoardPage(
        rows=with_profiles(board.top(key, offset=offset, limit=count), database=database),
        current_user=_own_standing(board, key, viewer, database=database, position=position),
        total_users=total,
    )


def player_standing(user: User, *, from_replica: bool = False) -> OwnStanding:
    """The player's all-time score and rank, for their own profile. `from_replica` for a plain
    read; the answer to the player's own change reads the primary, which has that change."""
    key = board_key(period=Period.ALL_TIME)
    if not from_replica:
        return _own_standing(board_backend(), key, user, database=DEFAULT_DB_ALIAS)
    return read_with_failover(
        lambda database: _own_standing(board_backend(database), key, user, database=database)
    )


def _own_standing(
    board: Board,
    key: BoardKey,
    viewer: User,
    *,
    database: str,
    position: Position | None = None,
) -> OwnStanding:
    position = position or board.position(key, viewer.pk)
    if position is not None:
        rank, score = position.standing.rank, position.standing.score
    else:
        rank = None
        score = (
            ScoreTotal.objects.using(database)
            .filter(board=key.board, period=key.period, period_start=key.period_start, user=viewer)
            .values_list("score", flat=True)
            .first()
            or 0
        )
    return OwnStanding(rank=rank, user_id=viewer.pk, username=viewer.username, score=score)


def with_profiles(standings: list[Standing], *, database: str = DEFAULT_DB_ALIAS) -> list[BoardRow]:
    """Attach names, avatars and countries in one query on `database`. An entry whose player
    is no longer visible (the index not yet told) is left out rather than shown."""
    profiles = {
        user.pk: user
        for user in User.objects.using(database)
        .filter(on_leaderboards(), pk__in=[standing.user_id for standing in standings])
        .only("id", "username", "avatar", "country")
    }
    return [
        BoardRow(
            rank=standing.rank,
            user_id=standing.user_id,
            username=profile.username,
            score=standing.score,
            avatar=profile.avatar,
            country=profile.country,
            last_updated=standing.reached_at,
        )
        for standing in standings
        if (profile := profiles.get(standing.user_id)) is not None
    ]


def visible_snapshot_entries(entries: list[dict[str, object]]) -> list[dict[str, object]]:
    """Archived entries minus players who have since hidden, left or been erased (their
    ranks stay as they were)."""
    user_ids = [entry["userId"] for entry in entries]
    visible = {
        str(user_id)
        for user_id in User.objects.filter(on_leaderboards(), pk__in=user_ids).values_list(
            "pk", flat=True
        )
    }
    return [entry for entry in entries if entry["userId"] in visible]
