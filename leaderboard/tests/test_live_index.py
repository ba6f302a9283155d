"""A committed score reaches the Redis index, and so the board, right after commit."""

from __future__ import annotations

from typing import Any

import pytest
import redis

from leaderboard.backends.base import BoardKey
from leaderboard.backends.redis import RedisBoard
from leaderboard.services import leaderboard_rebuild
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
