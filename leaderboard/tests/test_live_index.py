"""A committed score reaches the Redis index, and so the board, right after commit."""

from __future__ import annotations

from typing import Any

import pytest
import redis
from django.db import connection
from django.test.utils import CaptureQueriesContext

from leaderboard.backends.base import BoardKey
from leaderboard.backends.redis import RedisBoard
from leaderboard.services import leaderboard_rebuild
from scoring.models import ScoreUpdate
from scoring.tests.fixtures import GameServerKey, Player

pytestmark = pytest.mark.django_db


def test_a_committed_score_is_on_the_board_at_once(
    player: Player,
    game_server: GameServerKey,
    redis_index: redis.Redis,
    django_capture_on_commit_callbacks: Any,
) -> None:
    leaderboard_rebuild()

    with django_capture_on_commit_callbacks(execute=True):
        player.score_action(game_server)

    standings = RedisBoard().top(BoardKey(), offset=0, limit=10)
    assert [(s.user_id, s.score, s.rank) for s in standings] == [(player.user.pk, 100, 1)]
    data = player.client.get("/api/v1/leaderboard/top?country=US").json()["data"]
    assert data["currentUser"]["rank"] == 1
    assert data["leaderboard"][0]["score"] == 100


def test_an_index_outage_after_commit_is_logged_not_raised(
    player: Player,
    game_server: GameServerKey,
    request: pytest.FixtureRequest,
    django_capture_on_commit_callbacks: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = player.score_action(game_server)
    request.getfixturevalue("dead_redis")

    for callback in callbacks:
        callback()

    assert response.status_code == 200
    assert "Leaderboard index write failed" in caplog.text


def test_with_a_built_index_a_score_update_takes_its_ranks_from_it(
    make_player: Any,
    game_server: GameServerKey,
    redis_index: redis.Redis,
    django_capture_on_commit_callbacks: Any,
) -> None:
    """Counting the entries above a score in the database grows with the rank; the index
    answers in O(log N), so the write path costs the same at any board size."""
    leader, chaser = make_player(username="Leader"), make_player(username="Chaser")
    leaderboard_rebuild()
    with django_capture_on_commit_callbacks(execute=True):
        leader.score_action(game_server)  # 100
        leader.score_action(game_server)  # 200

    with (
        django_capture_on_commit_callbacks(execute=True),
        CaptureQueriesContext(connection) as queries,
    ):
        response = chaser.score_action(game_server)

    assert response.status_code == 200
    assert (response.json()["data"]["previousRank"], response.json()["data"]["rank"]) == (None, 2)
    assert not [query for query in queries if "COUNT(" in query["sql"]]
    update = ScoreUpdate.objects.get(user=chaser.user)
    assert (update.previous_rank, update.new_rank) == (None, 2)
