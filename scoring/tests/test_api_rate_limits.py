"""Score updates are limited per player (10 a minute by default) on top of the per-IP and
per-instance API limits; a limited update is refused with 429 and changes nothing."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework import status

from accounts.tests.helpers import assert_error
from scoreboard.config import Rate
from scoring.models import ScoreTotal, ScoreUpdate
from scoring.periods import Period
from scoring.tests.fixtures import HISTORY_URL, GameServerKey, Player

pytestmark = pytest.mark.django_db


def earn(player: Player, game_server: GameServerKey, count: int) -> list[tuple[str, Any]]:
    earned = []
    for _ in range(count):
        token, proof = player.complete(game_server)
        earned.append((token, player.update_body(action_id=proof["actionId"])))
    return earned


def test_exactly_the_per_player_limit_passes_in_a_burst(
    player: Player, game_server: GameServerKey
) -> None:
    earned = earn(player, game_server, 11)

    responses = [player.submit(token, body) for token, body in earned]

    assert [r.status_code for r in responses] == [200] * 10 + [429]
    assert [r["X-RateLimit-Remaining"] for r in responses[:10]] == [
        str(n) for n in range(9, -1, -1)
    ]
    assert {r["X-RateLimit-Limit"] for r in responses[:10]} == {"10"}
    limited = responses[-1]
    retry_after = int(limited["Retry-After"])
    assert 0 < retry_after <= 60
    assert_error(
        limited,
        status_code=status.HTTP_429_TOO_MANY_REQUESTS,
        code="RATE_LIMIT_EXCEEDED",
        message="Too many score update requests. Please wait before trying again.",
        retry_after=retry_after,
    )
    assert ScoreUpdate.objects.count() == 10
    assert ScoreTotal.objects.get(period=Period.ALL_TIME).score == 1000


def test_the_limit_is_per_player(
    player: Player, make_player: Any, game_server: GameServerKey, settings: Any
) -> None:
    settings.SCOREBOARD_RATE_SCORE_UPDATES = Rate(1, 60)
    rival = make_player()
    (mine,) = earn(player, game_server, 1)
    (theirs,) = earn(rival, game_server, 1)

    assert player.submit(*mine).status_code == status.HTTP_200_OK
    assert rival.submit(*theirs).status_code == status.HTTP_200_OK


def test_a_limited_token_stays_spendable_in_the_next_window(
    player: Player, game_server: GameServerKey, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from scoreboard import ratelimit

    settings.SCOREBOARD_RATE_SCORE_UPDATES = Rate(1, 60)
    first, second = earn(player, game_server, 2)
    player.submit(*first)
    assert player.submit(*second).status_code == status.HTTP_429_TOO_MANY_REQUESTS

    later = ratelimit.clock() + 60
    monkeypatch.setattr(ratelimit, "clock", lambda: later)

    assert player.submit(*second).status_code == status.HTTP_200_OK
    assert ScoreUpdate.objects.count() == 2


def test_score_updates_fail_closed_when_the_rate_limit_store_is_down(
    player: Player, game_server: GameServerKey, request: pytest.FixtureRequest
) -> None:
    (earned,) = earn(player, game_server, 1)
    request.getfixturevalue("dead_redis")

    response = player.submit(*earned)

    assert_error(
        response,
        status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
        code="REDIS_ERROR",
        message="Redis is unavailable. Retry later.",
        retry_after=5,
    )
    assert response["Retry-After"] == "5"
    assert not ScoreUpdate.objects.exists()
    # Reads fail open: the history is still served.
    assert player.client.get(HISTORY_URL).status_code == status.HTTP_200_OK
