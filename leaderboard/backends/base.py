"""What every board backend answers, and the ranking rules they share (DESIGN.md §2).

A board is one ordering of totals: a board name, a period bucket and optionally a country.
Order: score descending, then who reached the score first, then user id (so the order is
total). Rank is competition ranking: 1 + the number of visible entries with a strictly higher
score, so equal scores share a rank (1, 2, 2, 4). Only totals above zero of active players who
do not hide themselves are on a board.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Protocol

from scoring.periods import ALL_TIME_START, DEFAULT_BOARD, Period


@dataclass(frozen=True)
class BoardKey:
    board: str = DEFAULT_BOARD
    period: str = Period.ALL_TIME
    period_start: date = ALL_TIME_START
    country: str = ""  # empty: every country


@dataclass(frozen=True)
class Standing:
    """One entry of a board: a user's score, rank and when they reached that score."""

    user_id: uuid.UUID
    score: int
    rank: int
    reached_at: datetime


@dataclass(frozen=True)
class Position:
    """An entry's 0-based place in the board's order, with its standing."""

    index: int
    standing: Standing


class Board(Protocol):
    def top(self, key: BoardKey, *, offset: int, limit: int) -> list[Standing]:
        """Entries `offset` to `offset + limit - 1` in board order."""
        ...

    def position(self, key: BoardKey, user_id: uuid.UUID) -> Position | None:
        """The user's place and standing, or None when they are not on the board."""
        ...

    def total(self, key: BoardKey) -> int:
        """How many entries the board has."""
        ...

    def ranks_for_scores(
        self, key: BoardKey, scores: Sequence[int], *, user_id: uuid.UUID
    ) -> list[int]:
        """The rank each score would give `user_id`: 1 + the other entries strictly above
        it, whatever the board holds for the user meanwhile."""
        ...


def ranked(
    entries: Sequence[tuple[uuid.UUID, int, datetime]], *, first_rank: int, offset: int
) -> list[Standing]:
    """Competition ranks for consecutive entries in board order, given the first one's rank
    and its 0-based place: an entry shares the rank of the one before when their scores are
    equal, and otherwise ranks by its place."""
    standings: list[Standing] = []
    for index, (user_id, score, reached_at) in enumerate(entries):
        if not standings:
            rank = first_rank
        elif score == standings[-1].score:
            rank = standings[-1].rank
        else:
            rank = offset + index + 1
        standings.append(Standing(user_id=user_id, score=score, rank=rank, reached_at=reached_at))
    return standings
