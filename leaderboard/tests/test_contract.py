"""One contract, two backends: the SQL board and the Redis index return the same pages, ranks,
totals and tie order for the same data (DESIGN.md §2)."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from leaderboard.backends.base import BoardKey, Position, Standing
from leaderboard.services import index_score_committed
from leaderboard.tests.conftest import ALL_TIME, LATER, T0, Boards, expected_order
from scoring.models import ScoreTotal
from scoring.periods import ALL_TIME_START, Period
from scoring.services import score_totals_add
from scoring.signals import ScoreCommitted

pytestmark = pytest.mark.django_db


def standing(user: Any, score: int, rank: int, reached_at: Any = T0) -> Standing:
    return Standing(user_id=user.pk, score=score, rank=rank, reached_at=reached_at)


def test_equal_scores_share_a_rank_and_the_first_to_reach_it_is_listed_first(
    boards: Boards,
) -> None:
    a, b, c, d = (boards.player() for _ in range(4))
    boards.total(a, 300)
    boards.total(b, 200, reached_at=T0 + LATER)
    boards.total(c, 200)
    boards.total(d, 100)

    board = boards.board()

    assert board.top(ALL_TIME, offset=0, limit=10) == [
        standing(a, 300, 1),
        standing(c, 200, 2),
        standing(b, 200, 2, T0 + LATER),
        standing(d, 100, 4),
    ]
    assert board.total(ALL_TIME) == 4


def test_a_page_that_starts_inside_a_tie_has_the_ties_rank(boards: Boards) -> None:
    top, *tied = (boards.player() for _ in range(4))
    boards.total(top, 500)
    for n, player in enumerate(tied):
        boards.total(player, 100, reached_at=T0 + n * LATER)

    page = boards.board().top(ALL_TIME, offset=2, limit=5)

    assert page == [
        standing(tied[1], 100, 2, T0 + LATER),
        standing(tied[2], 100, 2, T0 + 2 * LATER),
    ]


def test_identical_score_and_time_fall_back_to_user_id_order(boards: Boards) -> None:
    players = [boards.player() for _ in range(3)]
    for player in players:
        boards.total(player, 50)

    page = boards.board().top(ALL_TIME, offset=0, limit=10)

    assert [s.user_id for s in page] == sorted((p.pk for p in players), key=lambda i: i.int)
    assert {s.rank for s in page} == {1}


def test_positions_give_the_place_and_the_competition_rank(boards: Boards) -> None:
    a, b, c = (boards.player() for _ in range(3))
    boards.total(a, 10)
    boards.total(b, 10, reached_at=T0 + LATER)
    boards.total(c, 30)
    outsider = boards.player()

    board = boards.board()

    assert board.position(ALL_TIME, b.pk) == Position(
        index=2, standing=standing(b, 10, 2, T0 + LATER)
    )
    assert board.position(ALL_TIME, c.pk) == Position(index=0, standing=standing(c, 30, 1))
    assert board.position(ALL_TIME, outsider.pk) is None


def test_zero_totals_hidden_inactive_players_are_on_no_board(boards: Boards) -> None:
    shown, zero, hidden, inactive = (boards.player() for _ in range(4))
    hidden.hide_from_leaderboards = True
    hidden.save()
    inactive.is_active = False
    inactive.save()
    for player, score in ((shown, 5), (zero, 0), (hidden, 900), (inactive, 800)):
        boards.total(player, score)

    board = boards.board()

    assert board.top(ALL_TIME, offset=0, limit=10) == [standing(shown, 5, 1)]
    assert board.total(ALL_TIME) == 1
    assert board.position(ALL_TIME, hidden.pk) is None


def test_country_boards_hold_only_that_countrys_players(boards: Boards) -> None:
    us, fr, none = boards.player(country="US"), boards.player(country="FR"), boards.player()
    for player in (us, fr, none):
        boards.total(player, 10)

    board = boards.board()

    assert [s.user_id for s in board.top(BoardKey(country="FR"), offset=0, limit=10)] == [fr.pk]
    assert board.total(BoardKey(country="US")) == 1
    assert board.total(ALL_TIME) == 3


def test_period_buckets_are_separate_boards(boards: Boards) -> None:
    today = timezone.now().date()
    a, b = boards.player(), boards.player()
    boards.total(a, 10, period=Period.DAILY, start=today - timedelta(days=1))
    boards.total(b, 20, period=Period.DAILY, start=today)
    boards.total(a, 30)

    board = boards.board()

    daily = BoardKey(period=Period.DAILY, period_start=today)
    assert [s.user_id for s in board.top(daily, offset=0, limit=10)] == [b.pk]
    assert [s.user_id for s in board.top(ALL_TIME, offset=0, limit=10)] == [a.pk]


def test_after_a_reversal_the_lower_total_replaces_the_higher(
    boards: Boards, django_capture_on_commit_callbacks: Any
) -> None:
    """A moderator's reversal lowers a total; its newer version wins over the index."""
    a, b = boards.player(), boards.player()
    boards.total(a, 100)
    boards.total(b, 60)
    board = boards.board()

    totals = score_totals_add(user=a, board="global", points=-50, now=T0 + LATER)
    index_score_committed(_event(a, totals))

    assert board.top(ALL_TIME, offset=0, limit=10) == [
        standing(b, 60, 1),
        standing(a, 50, 2, T0 + LATER),
    ]


def test_a_late_or_replayed_index_write_cannot_bring_an_old_total_back(boards: Boards) -> None:
    a = boards.player()
    first = score_totals_add(user=a, board="global", points=100, now=T0)
    second = score_totals_add(user=a, board="global", points=-40, now=T0 + LATER)
    board = boards.board()

    index_score_committed(_event(a, second))
    index_score_committed(_event(a, first))  # arrives late

    assert board.top(ALL_TIME, offset=0, limit=10) == [standing(a, 60, 1, T0 + LATER)]


def _event(user: Any, totals: Any) -> ScoreCommitted:
    return ScoreCommitted(
        score_update_id=uuid.uuid4(),
        user_id=user.pk,
        username=user.username,
        country=user.country,
        avatar=user.avatar,
        visible=True,
        board="global",
        status="COUNTED",
        score_increment=0,
        totals=totals,
        previous_rank=None,
        new_rank=None,
        committed_at=T0,
    )


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    scores=st.lists(
        st.tuples(st.integers(min_value=0, max_value=2**53 - 1), st.integers(0, 3)),
        min_size=1,
        max_size=12,
    ),
    offset=st.integers(0, 12),
    limit=st.integers(1, 12),
    probes=st.lists(st.integers(min_value=1, max_value=2**53 - 1), max_size=3),
)
def test_any_board_matches_the_oracle(
    boards: Boards, scores: list[tuple[int, int]], offset: int, limit: int, probes: list[int]
) -> None:
    ScoreTotal.objects.all().delete()
    rows = []
    for score, seconds in scores:
        player = boards.player()
        reached_at = T0 + seconds * LATER
        boards.total(player, score, reached_at=reached_at, start=ALL_TIME_START)
        rows.append((player.pk, score, reached_at))
    expected = expected_order(rows)

    board = boards.board()

    assert board.top(ALL_TIME, offset=offset, limit=limit) == expected[offset : offset + limit]
    assert board.total(ALL_TIME) == len(expected)
    for index, entry in enumerate(expected):
        assert board.position(ALL_TIME, entry.user_id) == Position(index=index, standing=entry)
        asked = [entry.score, *probes]
        others = [other.score for other in expected if other.user_id != entry.user_id]
        assert board.ranks_for_scores(ALL_TIME, asked, user_id=entry.user_id) == [
            1 + sum(score > probe for score in others) for probe in asked
        ]


def test_a_rank_asked_for_ignores_what_the_board_still_holds_for_the_player(
    boards: Boards,
) -> None:
    """A score update asks for its ranks before the index has its new total: the player's
    own entry, higher or lower, never counts as someone above them."""
    a, b = boards.player(), boards.player()
    boards.total(a, 100)
    boards.total(b, 60)
    board = boards.board()
    boards.total(a, 50, reached_at=T0 + LATER)  # in the database, not yet in the index

    assert board.ranks_for_scores(ALL_TIME, [100, 60, 50, 20], user_id=a.pk) == [1, 1, 2, 2]


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"hide_from_leaderboards": True}, id="hidden"),
        pytest.param({"is_active": False}, id="deactivated"),
    ],
)
def test_a_player_who_leaves_the_boards_disappears_from_ranks_and_counts(
    boards: Boards, django_capture_on_commit_callbacks: Any, change: dict[str, bool]
) -> None:
    leaving, staying = boards.player(country="US"), boards.player(country="US")
    boards.total(leaving, 100)
    boards.total(staying, 50)
    board = boards.board()

    with django_capture_on_commit_callbacks(execute=True):
        for name, value in change.items():
            setattr(leaving, name, value)
        leaving.save()

    for key in (ALL_TIME, BoardKey(country="US")):
        assert board.top(key, offset=0, limit=10) == [standing(staying, 50, 1)]
        assert board.total(key) == 1
        assert board.position(key, leaving.pk) is None


def test_a_player_who_comes_back_is_ranked_again(
    boards: Boards, django_capture_on_commit_callbacks: Any
) -> None:
    player = boards.player()
    player.hide_from_leaderboards = True
    player.save()
    boards.total(player, 70)
    board = boards.board()

    with django_capture_on_commit_callbacks(execute=True):
        player.hide_from_leaderboards = False
        player.save()

    assert board.top(ALL_TIME, offset=0, limit=10) == [standing(player, 70, 1)]


def test_a_player_who_moves_country_moves_between_country_boards(
    boards: Boards, django_capture_on_commit_callbacks: Any
) -> None:
    player = boards.player(country="US")
    boards.total(player, 70)
    board = boards.board()

    with django_capture_on_commit_callbacks(execute=True):
        player.country = "FR"
        player.save()

    assert board.total(BoardKey(country="US")) == 0
    assert board.top(BoardKey(country="FR"), offset=0, limit=10) == [standing(player, 70, 1)]
