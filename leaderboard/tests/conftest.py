"""Boards filled straight from totals, and the two backends to read them with."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from accounts.models import User
from leaderboard.backends.base import Board, BoardKey, Standing
from leaderboard.backends.redis import RedisBoard
from leaderboard.backends.sql import SqlBoard
from leaderboard.services import leaderboard_rebuild
from scoring.models import ScoreTotal
from scoring.periods import ALL_TIME_START, DEFAULT_BOARD, Period

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


@dataclass
class Boards:
    """Write totals to the database; read them back through the backend under test."""

    backend: str
    make_user: Callable[..., User]

    def board(self) -> Board:
        if self.backend == "redis":
            leaderboard_rebuild(board=DEFAULT_BOARD)
            return RedisBoard()
        return SqlBoard()

    def player(self, **fields: Any) -> User:
        return self.make_user(**fields)

    def total(
        self,
        user: User,
        score: int,
        *,
        reached_at: datetime = T0,
        period: str = Period.ALL_TIME,
        start: date = ALL_TIME_START,
    ) -> None:
        ScoreTotal.objects.update_or_create(
            board=DEFAULT_BOARD,
            period=period,
            period_start=start,
            user=user,
            defaults={"score": score, "reached_at": reached_at},
        )


@pytest.fixture(params=["sql", "redis"])
def boards(request: pytest.FixtureRequest, make_user: Callable[..., User]) -> Boards:
    if request.param == "redis":
        request.getfixturevalue("redis_index")
    return Boards(backend=request.param, make_user=make_user)


def expected_order(rows: list[tuple[uuid.UUID, int, datetime]]) -> list[Standing]:
    """The board order and ranks computed the slow, obvious way: the oracle."""
    ordered = sorted(rows, key=lambda row: (-row[1], row[2], row[0].int))
    return [
        Standing(
            user_id=user_id,
            score=score,
            rank=1 + sum(1 for _, other, _ in rows if other > score),
            reached_at=reached_at,
        )
        for user_id, score, reached_at in ordered
        if score > 0
    ]


ALL_TIME = BoardKey()
LATER = timedelta(seconds=1)
