"""Decisions reach the boards on both backends: a rejection restores the exact totals and
ranks, a held update stays off the boards until approved, a ban takes the player off.

The Redis index is rebuilt once from the database (the given state) and then follows only
the `score_committed` events the decisions send and the accounts signal a ban sends; the SQL
board reads the totals themselves.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest

from accounts.models import User
from leaderboard.backends.base import Board, BoardKey
from leaderboard.backends.redis import RedisBoard
from leaderboard.backends.sql import SqlBoard
from leaderboard.selectors import board_key
from leaderboard.services import leaderboard_rebuild
from scoring.models import ScoreStatus
from scoring.moderation import score_update_approve, score_update_reject, user_ban
from scoring.periods import DEFAULT_BOARD, Period
from scoring.tests.moderation_fixtures import IP_HOP, TOO_FAST, record_update

pytestmark = pytest.mark.django_db

PERIOD_KEYS = [Period.ALL_TIME, Period.DAILY, Period.WEEKLY, Period.MONTHLY]


@pytest.fixture(params=["sql", "redis"])
def read_board(request: pytest.FixtureRequest) -> Callable[[], Board]:
    """Build the backend's view of the database as it is now (a rebuild for Redis); the
    returned board is read again after the decisions, without rebuilding."""
    if request.param == "redis":
        request.getfixturevalue("redis_index")

    def given() -> Board:
        if request.param == "redis":
            leaderboard_rebuild(board=DEFAULT_BOARD)
            return RedisBoard()
        return SqlBoard()

    return given


def standings(board: Board, key: BoardKey) -> list[tuple[uuid.UUID, int, int]]:
    return [(s.user_id, s.score, s.rank) for s in board.top(key, offset=0, limit=20)]


def on_every_board(rows: list[tuple[uuid.UUID, int, int]]) -> dict[str, Any]:
    return dict.fromkeys(PERIOD_KEYS, rows)


def every_board(board: Board, **keys: Any) -> dict[str, list[tuple[uuid.UUID, int, int]]]:
    return {period: standings(board, board_key(period=period, **keys)) for period in PERIOD_KEYS}


def test_rejecting_restores_exact_totals_and_ranks(
    read_board: Callable[[], Board],
    make_user: Callable[..., User],
    cheater: User,
    moderator: User,
    django_capture_on_commit_callbacks: Any,
) -> None:
    # Given three honest players, and a cheater who went from 3rd (250) to 1st (+150 flagged,
    # +100 counted)
    alice = make_user(username="alice", country="GB")
    bob = make_user(username="bob", country="US")
    carol = make_user(username="carol", country="GB")
    record_update(alice, 300)
    record_update(bob, 200)
    record_update(carol, 250)
    record_update(cheater, 250)
    honest_board = [(alice.pk, 300, 1), (carol.pk, 250, 2), (cheater.pk, 250, 2), (bob.pk, 200, 4)]
    flagged = record_update(cheater, 150, status=ScoreStatus.FLAGGED, reasons=[IP_HOP])
    counted = record_update(cheater, 100)
    board = read_board()
    assert standings(board, BoardKey())[0] == (cheater.pk, 500, 1)

    # When a moderator rejects both
    with django_capture_on_commit_callbacks(execute=True):
        score_update_reject(update_id=flagged.pk, moderator=moderator)
        score_update_reject(update_id=counted.pk, moderator=moderator)

    # Then every period's board has the exact scores and ranks it had without them
    assert {
        period: {(user_id, score, rank) for user_id, score, rank in rows}
        for period, rows in every_board(board).items()
    } == {period: set(honest_board) for period in PERIOD_KEYS}
    assert [row[1:] for row in standings(board, BoardKey())] == [
        (300, 1),
        (250, 2),
        (250, 2),
        (200, 4),
    ]
    # And the country board too
    assert set(standings(board, board_key(period=Period.ALL_TIME, country="GB"))) == {
        (alice.pk, 300, 1),
        (carol.pk, 250, 2),
        (cheater.pk, 250, 2),
    }
    # And the index agrees entry by entry, tie order included, with a rebuild from the database
    followed = every_board(board)
    assert followed == every_board(read_board())


def test_a_held_update_is_off_the_boards_until_approved(
    read_board: Callable[[], Board],
    make_user: Callable[..., User],
    cheater: User,
    moderator: User,
    django_capture_on_commit_callbacks: Any,
) -> None:
    # Given a player on 300 and a cheater on 100 with 400 more held
    alice = make_user(username="alice")
    record_update(alice, 300)
    record_update(cheater, 100)
    held = record_update(cheater, 400, status=ScoreStatus.HELD, reasons=[TOO_FAST])
    board = read_board()

    # Then the held points are on no board
    assert every_board(board) == on_every_board([(alice.pk, 300, 1), (cheater.pk, 100, 2)])

    # When a moderator approves them, the cheater leads every board
    with django_capture_on_commit_callbacks(execute=True):
        score_update_approve(update_id=held.pk, moderator=moderator)

    followed = every_board(board)
    assert followed == on_every_board([(cheater.pk, 500, 1), (alice.pk, 300, 2)])
    assert followed == every_board(read_board())


def test_a_discarded_hold_never_reaches_the_boards(
    read_board: Callable[[], Board],
    cheater: User,
    moderator: User,
    django_capture_on_commit_callbacks: Any,
) -> None:
    held = record_update(cheater, 400, status=ScoreStatus.HELD)
    board = read_board()

    with django_capture_on_commit_callbacks(execute=True):
        score_update_reject(update_id=held.pk, moderator=moderator)

    assert every_board(board) == on_every_board([])


def test_a_banned_player_leaves_every_board(
    read_board: Callable[[], Board],
    make_user: Callable[..., User],
    cheater: User,
    moderator: User,
    django_capture_on_commit_callbacks: Any,
) -> None:
    alice = make_user(username="alice", country="GB")
    record_update(alice, 300)
    record_update(cheater, 500)
    board = read_board()

    with django_capture_on_commit_callbacks(execute=True):
        user_ban(user_id=cheater.pk, moderator=moderator, reason="bot")

    assert every_board(board) == on_every_board([(alice.pk, 300, 1)])
    assert standings(board, board_key(period=Period.ALL_TIME, country="GB")) == [(alice.pk, 300, 1)]
