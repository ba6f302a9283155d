"""The board read straight from the database's totals: exact by construction, and the
embedded default. The ranking index makes top-N an index scan; a rank is a count of the
entries above, which grows with the rank (the Redis backend answers in O(log N))."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from django.db import DEFAULT_DB_ALIAS
from django.db.models import Q, QuerySet

from leaderboard.backends.base import BoardKey, Position, Standing, ranked
from scoring.models import ScoreTotal
from scoring.selectors import visible_totals

BOARD_ORDER = ("-score", "reached_at", "user_id")


def board_entries(key: BoardKey, *, database: str = DEFAULT_DB_ALIAS) -> QuerySet[ScoreTotal]:
    """The visible totals on a board, unordered, read from the database alias `database`."""
    entries = (
        visible_totals(board=key.board)
        .using(database)
        .filter(period=key.period, period_start=key.period_start)
    )
    if key.country:
        entries = entries.filter(user__country=key.country)
    return entries


class SqlBoard:
    def __init__(self, *, database: str = DEFAULT_DB_ALIAS) -> None:
        self.database = database

    def top(self, key: BoardKey, *, offset: int, limit: int) -> list[Standing]:
        entries = board_entries(key, database=self.database)
        rows = list(
            entries.order_by(*BOARD_ORDER).values_list("user_id", "score", "reached_at")[
                offset : offset + limit
            ]
        )
        if not rows:
            return []
        first_rank = 1 + entries.filter(score__gt=rows[0][1]).count()
        return ranked(rows, first_rank=first_rank, offset=offset)

    def position(self, key: BoardKey, user_id: uuid.UUID) -> Position | None:
        entries = board_entries(key, database=self.database)
        row = entries.filter(user_id=user_id).values_list("score", "reached_at").first()
        if row is None:
            return None
        score, reached_at = row
        rank = 1 + entries.filter(score__gt=score).count()
        ahead_in_tie = entries.filter(
            Q(score=score, reached_at__lt=reached_at)
            | Q(score=score, reached_at=reached_at, user_id__lt=user_id)
        ).count()
        return Position(
            index=rank - 1 + ahead_in_tie,
            standing=Standing(user_id=user_id, score=score, rank=rank, reached_at=reached_at),
        )

    def total(self, key: BoardKey) -> int:
        return board_entries(key, database=self.database).count()

    def ranks_for_scores(
        self, key: BoardKey, scores: Sequence[int], *, user_id: uuid.UUID
    ) -> list[int]:
        others = board_entries(key, database=self.database).exclude(user_id=user_id)
        return [1 + others.filter(score__gt=score).count() for score in scores]
