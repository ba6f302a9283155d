"""A board's first page is kept in Redis while neither the board nor any shown profile has
changed: served again without reading the index or the profiles, never once it is stale."""

from __future__ import annotations

from typing import Any

import pytest
import redis
from django.db import connection
from django.test.utils import CaptureQueriesContext

from leaderboard.services import leaderboard_rebuild
from scoring.models import ScoreTotal
from scoring.tests.fixtures import GameServerKey, Player

pytestmark = pytest.mark.django_db

TOP_URL = "/api/v1/leaderboard/top?limit=10"


@pytest.fixture
def players(
    make_player: Any,
    game_server: GameServerKey,
    redis_index: redis.Redis,
    django_capture_on_commit_callbacks: Any,
) -> tuple[Player, Player]:
    leader, chaser = make_player(username="Leader"), make_player(username="Chaser")
    leaderboard_rebuild()
    with django_capture_on_commit_callbacks(execute=True):
        leader.score_action(game_server)
        leader.score_action(game_server)
        chaser.score_action(game_server)
    return leader, chaser


def board(player: Player) -> tuple[list[tuple[str, int, int]], int]:
    """(username, score, rank) per entry, and how many profile reads the request made."""
    with CaptureQueriesContext(connection) as queries:
        response = player.client.get(TOP_URL)
    assert response.status_code == 200, response.content
    profile_reads = [
        query
        for query in queries
        if '"accounts_user"."avatar"' in query["sql"] and " IN (" in query["sql"]
    ]
    rows = [
        (row["username"], row["score"], row["rank"])
        for row in response.json()["data"]["leaderboard"]
    ]
    return rows, len(profile_reads)


def test_a_first_page_is_read_once_then_served_until_the_board_changes(
    players: tuple[Player, Player],
    game_server: GameServerKey,
    django_capture_on_commit_callbacks: Any,
) -> None:
    leader, chaser = players
    first, reads = board(chaser)
    assert (first, reads) == ([("Leader", 200, 1), ("Chaser", 100, 2)], 1)
    assert board(leader) == (first, 0)

    with django_capture_on_commit_callbacks(execute=True):
        chaser.score_action(game_server)
        chaser.score_action(game_server)

    assert board(leader) == ([("Chaser", 300, 1), ("Leader", 200, 2)], 1)


def test_a_renamed_or_hidden_player_is_never_shown_from_an_older_page(
    players: tuple[Player, Player], django_capture_on_commit_callbacks: Any
) -> None:
    leader, chaser = players
    board(chaser)

    with django_capture_on_commit_callbacks(execute=True):
        leader.user.username = "Champion"
        leader.user.save()
    assert board(chaser)[0] == [("Champion", 200, 1), ("Chaser", 100, 2)]

    with django_capture_on_commit_callbacks(execute=True):
        leader.user.hide_from_leaderboards = True
        leader.user.save()
    assert board(chaser)[0] == [("Chaser", 100, 1)]


def test_a_rebuild_replaces_every_cached_page(players: tuple[Player, Player]) -> None:
    leader, chaser = players
    board(chaser)
    # Changed in the database alone (as a restore would), then the index rebuilt from it.
    ScoreTotal.objects.filter(user=chaser.user).update(score=900)

    leaderboard_rebuild()

    assert board(leader)[0] == [("Chaser", 900, 1), ("Leader", 200, 2)]


def test_without_redis_nothing_is_cached(
    players: tuple[Player, Player], settings: Any, redis_index: redis.Redis
) -> None:
    leader, chaser = players
    board(chaser)
    settings.REDIS_URL = ""

    assert board(leader)[1] == 1
