"""A player who hides (PATCH users/me) or erases their account (DELETE users/me) leaves every
board at once, through the API, on both backends."""

from __future__ import annotations

from typing import Any, cast

import pytest
import redis
from rest_framework.test import APIClient

from accounts.models import User
from conftest import TEST_PASSWORD
from leaderboard.backends.base import BoardKey
from leaderboard.backends.redis import as_text, decode_member, members_key, set_key
from leaderboard.tests.conftest import Boards
from leaderboard.tests.test_api import AROUND_URL, TOP_URL, client_for
from scoring.periods import Period

pytestmark = pytest.mark.django_db

ME_URL = "/api/v1/users/me"
US_BOARDS = (BoardKey(), BoardKey(country="US"))


@pytest.fixture
def players(boards: Boards) -> list[User]:
    """Three US players with 300, 200 and 100 points, all time, on a built board."""
    players = [boards.player(country="US") for _ in range(3)]
    for player, score in zip(players, [300, 200, 100], strict=True):
        boards.total(player, score)
    boards.board()
    return players


def listed(client: APIClient, url: str) -> list[str]:
    return [row["userId"] for row in client.get(url).json()["data"]["leaderboard"]]


def indexed(client: redis.Redis, user: User) -> list[BoardKey]:
    """The index's boards that still hold the user, in the sorted set or the members hash."""
    return [
        key
        for key in US_BOARDS
        if client.hget(members_key(key), user.pk.hex) is not None
        or user.pk in {decode_member(as_text(m))[0] for m in members(client, key)}
    ]


def members(client: redis.Redis, key: BoardKey) -> list[bytes]:
    return cast(list[bytes], client.zrange(set_key(key), 0, -1))


@pytest.mark.parametrize(
    ("method", "body"),
    [
        pytest.param("patch", {"hideFromLeaderboards": True}, id="hide"),
        pytest.param("delete", {"password": TEST_PASSWORD}, id="erase"),
    ],
)
def test_a_player_who_leaves_is_on_no_board_at_once(
    players: list[User],
    boards: Boards,
    request: pytest.FixtureRequest,
    django_capture_on_commit_callbacks: Any,
    method: str,
    body: dict[str, Any],
) -> None:
    # given three players on the boards, the leader about to leave
    leader, second, third = players
    viewer = client_for(third)
    others = [str(second.pk), str(third.pk)]

    # when the leader hides or erases their account through the API
    with django_capture_on_commit_callbacks(execute=True):
        response = getattr(client_for(leader), method)(ME_URL, body, format="json")
    assert response.status_code in (200, 204), response.content

    # then no board or count lists them, all time or in their country, around anyone
    for url in (TOP_URL, f"{TOP_URL}?country=US", f"{AROUND_URL}?limit=5"):
        assert listed(viewer, url) == others, url
    data = viewer.get(TOP_URL).json()["data"]
    assert (data["totalUsers"], data["leaderboard"][0]["rank"]) == (2, 1)
    if boards.backend == "redis":
        # and the index itself no longer holds them
        index = request.getfixturevalue("redis_index")
        assert indexed(index, leader) == []
        assert indexed(index, second) == list(US_BOARDS)


def test_a_hidden_player_still_sees_their_own_score_but_no_rank(
    players: list[User], django_capture_on_commit_callbacks: Any
) -> None:
    leader = players[0]
    client = client_for(leader)

    with django_capture_on_commit_callbacks(execute=True):
        client.patch(ME_URL, {"hideFromLeaderboards": True}, format="json")

    for url in (TOP_URL, f"{AROUND_URL}?period={Period.ALL_TIME}"):
        current = client.get(url).json()["data"]["currentUser"]
        assert (current["rank"], current["score"]) == (None, 300)
