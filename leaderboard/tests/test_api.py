"""GET /api/v1/leaderboard/top, /around-me and /history."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.core.management import call_command
from django.utils import timezone
from rest_framework import status
from rest_framework.test import APIClient

from accounts.models import User
from accounts.services import token_pair_for_credentials
from accounts.tests.helpers import UtcTimestamp, assert_error, assert_invalid
from conftest import TEST_PASSWORD
from leaderboard.tests.conftest import T0, Boards
from scoring.periods import Period, period_start

pytestmark = pytest.mark.django_db

TOP_URL = "/api/v1/leaderboard/top"
AROUND_URL = "/api/v1/leaderboard/around-me"
HISTORY_URL = "/api/v1/leaderboard/history"


def client_for(user: User) -> APIClient:
    client = APIClient()
    pair = token_pair_for_credentials(username=user.username, password=TEST_PASSWORD)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {pair.access}")
    return client


def entry(user: User, score: int, rank: int) -> dict[str, Any]:
    return {
        "rank": rank,
        "userId": str(user.pk),
        "username": user.username,
        "score": score,
        "avatar": user.avatar,
        "country": user.country,
        "lastUpdated": "2026-11-27T12:00:00Z",
    }


@pytest.fixture
def ranked_players(boards: Boards) -> list[User]:
    """Five players with 500, 400, 300, 300, 100 points, all time."""
    players = [
        boards.player(country="US", avatar=f"https://cdn.example.com/{n}.png") for n in range(5)
    ]
    for player, score in zip(players, [500, 400, 300, 300, 100], strict=True):
        boards.total(player, score)
    boards.board()  # builds the index for the Redis backend
    return players


def test_top_answers_as_the_spec_shows(ranked_players: list[User], make_user: Any) -> None:
    viewer = make_user()

    response = client_for(viewer).get(TOP_URL)

    assert response.status_code == status.HTTP_200_OK
    a, b, *tied, e = ranked_players
    c, d = sorted(tied, key=lambda user: user.pk.int)  # equal score and time: by id
    assert response.json() == {
        "success": True,
        "data": {
            "leaderboard": [
                entry(a, 500, 1),
                entry(b, 400, 2),
                entry(c, 300, 3),
                entry(d, 300, 3),
                entry(e, 100, 5),
            ],
            "currentUser": {
                "rank": None,
                "userId": str(viewer.pk),
                "username": viewer.username,
                "score": 0,
            },
            "totalUsers": 5,
            "period": "ALL_TIME",
            "periodStart": "1970-01-01",
            "country": None,
            "generatedAt": UtcTimestamp(),
        },
    }


def test_the_caller_gets_their_own_rank_outside_the_page(ranked_players: list[User]) -> None:
    last = ranked_players[-1]

    data = client_for(last).get(f"{TOP_URL}?limit=2&offset=1").json()["data"]

    assert [row["rank"] for row in data["leaderboard"]] == [2, 3]
    assert data["currentUser"] == {
        "rank": 5,
        "userId": str(last.pk),
        "username": last.username,
        "score": 100,
    }


def test_a_hidden_caller_sees_their_score_but_no_rank(
    ranked_players: list[User], django_capture_on_commit_callbacks: Any
) -> None:
    leader = ranked_players[0]
    with django_capture_on_commit_callbacks(execute=True):
        leader.hide_from_leaderboards = True
        leader.save()

    data = client_for(leader).get(TOP_URL).json()["data"]

    assert data["currentUser"]["rank"] is None
    assert data["currentUser"]["score"] == 500
    assert [row["rank"] for row in data["leaderboard"]] == [1, 2, 2, 4]
    assert data["totalUsers"] == 4


def test_periods_and_countries_select_the_board(boards: Boards) -> None:
    today = period_start(Period.DAILY, timezone.now())
    us, fr = boards.player(country="US"), boards.player(country="FR")
    boards.total(us, 10, period=Period.DAILY, start=today)
    boards.total(fr, 20, period=Period.DAILY, start=today)
    boards.total(us, 99)
    boards.board()
    client = client_for(us)

    daily = client.get(f"{TOP_URL}?period=DAILY").json()["data"]
    daily_us = client.get(f"{TOP_URL}?period=DAILY&country=US").json()["data"]

    assert [row["userId"] for row in daily["leaderboard"]] == [str(fr.pk), str(us.pk)]
    assert (daily["period"], daily["periodStart"]) == ("DAILY", today.isoformat())
    assert [row["userId"] for row in daily_us["leaderboard"]] == [str(us.pk)]
    assert daily_us["currentUser"]["rank"] == 1
    assert daily_us["country"] == "US"


LIMIT_RANGE = ["Ensure this value is less than or equal to 100."]


@pytest.mark.parametrize(
    ("query", "details"),
    [
        ("limit=0", {"limit": ["Ensure this value is greater than or equal to 1."]}),
        ("limit=101", {"limit": LIMIT_RANGE}),
        ("limit=abc", {"limit": ["A valid integer is required."]}),
        ("limit=10.0", {"limit": ["A valid integer is required."]}),
        ("limit=-1", {"limit": ["A valid integer is required."]}),
        ("limit=1e1", {"limit": ["A valid integer is required."]}),
        ("offset=-5", {"offset": ["A valid integer is required."]}),
        ("period=YEARLY", {"period": ['"YEARLY" is not a valid choice.']}),
        ("period=daily", {"period": ['"daily" is not a valid choice.']}),
        ("country=XX", {"country": ["An ISO 3166-1 alpha-2 code, e.g. US."]}),
        ("country=usa", {"country": ["Ensure this field has no more than 2 characters."]}),
        ("limit=5&limit=6", {"limit": ["Give this parameter once."]}),
        ("sort=score", {"sort": ["Unknown field."]}),
    ],
)
def test_bad_parameters_are_invalid_input(
    make_user: Callable[..., User], query: str, details: dict[str, list[str]]
) -> None:
    response = client_for(make_user()).get(f"{TOP_URL}?{query}")

    assert_invalid(response, details)


def test_the_board_needs_a_jwt(api_client: APIClient) -> None:
    assert api_client.get(TOP_URL).status_code == status.HTTP_401_UNAUTHORIZED


def test_top_costs_the_same_queries_for_ten_or_a_hundred_rows(
    make_user: Callable[..., User], django_assert_num_queries: Any
) -> None:
    from scoring.models import ScoreTotal

    players = [make_user() for _ in range(120)]
    ScoreTotal.objects.bulk_create(
        ScoreTotal(
            board="global",
            period=Period.ALL_TIME,
            period_start=period_start(Period.ALL_TIME, T0),
            user=player,
            score=n + 1,
            reached_at=T0,
        )
        for n, player in enumerate(players)
    )
    client = client_for(players[0])

    # JWT user, page, rank of the first entry, profiles, own entry, own rank, own tie place,
    # total: a fixed number, whatever the page size.
    with django_assert_num_queries(8):
        assert len(client.get(f"{TOP_URL}?limit=10").json()["data"]["leaderboard"]) == 10
    with django_assert_num_queries(8):
        assert len(client.get(f"{TOP_URL}?limit=100").json()["data"]["leaderboard"]) == 100


# --- around-me ------------------------------------------------------------------------------


def test_around_me_shows_neighbours_above_and_below(ranked_players: list[User]) -> None:
    # Of the two players tied on 300, the lower id is listed first, at place 3.
    middle = min(ranked_players[2:4], key=lambda user: user.pk.int)

    data = client_for(middle).get(f"{AROUND_URL}?limit=1").json()["data"]

    assert [(row["rank"], row["score"]) for row in data["leaderboard"]] == [
        (2, 400),
        (3, 300),
        (3, 300),
    ]
    assert data["currentUser"]["rank"] == 3
    assert data["totalUsers"] == 5


def test_around_me_at_the_top_and_the_bottom_stays_inside_the_board(
    ranked_players: list[User],
) -> None:
    top = client_for(ranked_players[0]).get(f"{AROUND_URL}?limit=2").json()["data"]
    bottom = client_for(ranked_players[-1]).get(f"{AROUND_URL}?limit=2").json()["data"]

    assert [row["rank"] for row in top["leaderboard"]] == [1, 2, 3]
    assert [row["rank"] for row in bottom["leaderboard"]] == [3, 3, 5]


def test_around_me_for_an_unranked_caller_shows_the_end_of_the_board(
    ranked_players: list[User], make_user: Callable[..., User]
) -> None:
    data = client_for(make_user()).get(f"{AROUND_URL}?limit=2").json()["data"]

    assert [row["rank"] for row in data["leaderboard"]] == [3, 5]
    assert data["currentUser"]["rank"] is None


def test_around_me_refuses_a_limit_over_fifty(make_user: Callable[..., User]) -> None:
    response = client_for(make_user()).get(f"{AROUND_URL}?limit=51")

    assert_invalid(response, {"limit": ["Ensure this value is less than or equal to 50."]})


# --- reads survive Redis --------------------------------------------------------------------


def test_reads_fall_back_to_the_database_while_redis_is_down(
    ranked_players: list[User], request: pytest.FixtureRequest
) -> None:
    request.getfixturevalue("dead_redis")

    response = client_for(ranked_players[1]).get(TOP_URL)

    assert response.status_code == status.HTTP_200_OK
    data = response.json()["data"]
    assert [row["score"] for row in data["leaderboard"]] == [500, 400, 300, 300, 100]
    assert data["currentUser"]["rank"] == 2


def test_reads_fall_back_to_the_database_until_the_index_is_rebuilt(
    make_user: Callable[..., User], redis_index: Any
) -> None:
    from scoring.models import ScoreTotal

    player = make_user()
    ScoreTotal.objects.create(
        board="global", period=Period.ALL_TIME, period_start=period_start(Period.ALL_TIME, T0),
        user=player, score=42, reached_at=T0,
    )  # fmt: skip

    data = client_for(player).get(TOP_URL).json()["data"]  # Redis is empty: never built

    assert [row["score"] for row in data["leaderboard"]] == [42]
    assert data["currentUser"]["rank"] == 1


# --- history --------------------------------------------------------------------------------


def test_history_returns_the_archived_standings_of_a_closed_day(
    boards: Boards, django_capture_on_commit_callbacks: Any
) -> None:
    yesterday = timezone.now().date() - timedelta(days=1)
    a, b, hidden = boards.player(), boards.player(), boards.player()
    for player, score in ((a, 30), (b, 20), (hidden, 10)):
        boards.total(player, score, period=Period.DAILY, start=yesterday)
    call_command("snapshot_leaderboards", stdout=None)
    with django_capture_on_commit_callbacks(execute=True):
        hidden.hide_from_leaderboards = True
        hidden.save()

    response = client_for(a).get(f"{HISTORY_URL}?period=DAILY&date={yesterday.isoformat()}")

    assert response.status_code == status.HTTP_200_OK
    data = response.json()["data"]
    assert [(row["rank"], row["score"]) for row in data["leaderboard"]] == [(1, 30), (2, 20)]
    assert (data["period"], data["periodStart"], data["totalUsers"]) == (
        "DAILY",
        yesterday.isoformat(),
        3,
    )


def test_history_of_a_period_never_archived_is_not_found(make_user: Callable[..., User]) -> None:
    response = client_for(make_user()).get(f"{HISTORY_URL}?period=WEEKLY&date=2020-01-01")

    assert_error(
        response,
        status_code=status.HTTP_404_NOT_FOUND,
        code="NOT_FOUND",
        message="No archived WEEKLY standings for the period containing 2020-01-01.",
    )


WRONG_DATE = "Date has wrong format. Use one of these formats instead: YYYY-MM-DD."


@pytest.mark.parametrize(
    ("query", "details"),
    [
        ("period=DAILY", {"date": ["This field is required."]}),
        ("period=DAILY&date=27-11-2026", {"date": [WRONG_DATE]}),
        ("period=ALL_TIME&date=2026-11-27", {"period": ['"ALL_TIME" is not a valid choice.']}),
    ],
)  # fmt: skip
def test_history_refuses_bad_parameters(
    make_user: Callable[..., User], query: str, details: dict[str, list[str]]
) -> None:
    assert_invalid(client_for(make_user()).get(f"{HISTORY_URL}?{query}"), details)


def test_an_empty_board_answers_with_no_entries(boards: Boards) -> None:
    viewer = boards.player()
    boards.board()

    for url in (TOP_URL, AROUND_URL):
        data = client_for(viewer).get(url).json()["data"]
        assert (data["leaderboard"], data["totalUsers"], data["currentUser"]["rank"]) == (
            [],
            0,
            None,
        )


def test_the_profile_carries_the_all_time_score_and_rank(ranked_players: list[User]) -> None:
    second = ranked_players[1]

    data = client_for(second).get("/api/v1/users/me").json()["data"]

    assert (data["username"], data["score"], data["rank"]) == (second.username, 400, 2)
