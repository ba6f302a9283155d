"""GET /api/v1/users/me/history: the caller's own score updates, newest first, by cursor."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework import status

from accounts.tests.helpers import assert_error
from scoring.models import ScoreStatus, ScoreUpdate
from scoring.tests.fixtures import HISTORY_URL, GameServerKey, Player

pytestmark = pytest.mark.django_db


def test_history_lists_the_players_updates_newest_first(
    player: Player, game_server: GameServerKey
) -> None:
    player.score_action(game_server, action_type="COMPLETE_QUEST")
    player.score_action(game_server, action_type="WIN_GAME")

    response = player.client.get(HISTORY_URL)

    assert response.status_code == status.HTTP_200_OK
    data = response.json()["data"]
    assert [item["actionType"] for item in data["items"]] == ["WIN_GAME", "COMPLETE_QUEST"]
    newest = data["items"][0]
    update = ScoreUpdate.objects.get(action_type="WIN_GAME")
    assert newest == {
        "id": str(update.pk),
        "actionType": "WIN_GAME",
        "actionId": str(update.action_id),
        "scoreIncrement": 100,
        "previousScore": 50,
        "newScore": 150,
        "previousRank": 1,
        "newRank": 1,
        "status": "COUNTED",
        "createdAt": update.created_at.isoformat().replace("+00:00", "Z"),
    }
    assert (data["next"], data["previous"]) == (None, None)


def test_history_shows_only_the_callers_own_updates(
    player: Player, make_player: Any, game_server: GameServerKey
) -> None:
    rival = make_player()
    rival.score_action(game_server)

    response = player.client.get(HISTORY_URL)

    assert response.json()["data"]["items"] == []


def test_history_pages_by_cursor_without_gaps_or_repeats(
    player: Player, game_server: GameServerKey
) -> None:
    for _ in range(5):
        player.score_action(game_server, action_type="ACHIEVEMENT_UNLOCK")

    seen: list[int] = []
    url: str | None = f"{HISTORY_URL}?limit=2"
    pages = 0
    while url:
        data = player.client.get(url).json()["data"]
        seen += [item["newScore"] for item in data["items"]]
        url = data["next"]
        pages += 1

    assert seen == [125, 100, 75, 50, 25]
    assert pages == 3


def test_a_flag_stays_internal_and_a_hold_reads_as_pending_review(
    player: Player, game_server: GameServerKey
) -> None:
    player.score_action(game_server)
    player.score_action(game_server)
    first, second = ScoreUpdate.objects.order_by("created_at")
    ScoreUpdate.objects.filter(pk=first.pk).update(status=ScoreStatus.FLAGGED)
    ScoreUpdate.objects.filter(pk=second.pk).update(status=ScoreStatus.HELD)

    items = player.client.get(HISTORY_URL).json()["data"]["items"]

    assert [item["status"] for item in items] == ["PENDING_REVIEW", "COUNTED"]


@pytest.mark.parametrize("query", ["limit=0", "limit=-1", "limit=abc", "limit=101", "cursor="])
def test_a_malformed_page_query_is_invalid_input(player: Player, query: str) -> None:
    response = player.client.get(f"{HISTORY_URL}?{query}")

    assert response.status_code == status.HTTP_400_BAD_REQUEST
    assert response.json()["error"]["code"] == "INVALID_INPUT"
    assert set(response.json()["error"]["details"]) == {query.partition("=")[0]}


def test_an_undeclared_query_parameter_is_invalid_input(player: Player) -> None:
    response = player.client.get(f"{HISTORY_URL}?page=2")

    assert response.status_code == status.HTTP_400_BAD_REQUEST
    assert response.json()["error"]["details"] == {"page": ["Unknown field."]}


def test_a_forged_cursor_is_invalid_input(player: Player) -> None:
    response = player.client.get(f"{HISTORY_URL}?cursor=bm9wZQ")

    assert_error(
        response,
        status_code=status.HTTP_404_NOT_FOUND,
        code="NOT_FOUND",
        message="Invalid cursor",
    )


def test_history_needs_a_jwt(player: Player) -> None:
    player.client.credentials()

    assert player.client.get(HISTORY_URL).status_code == status.HTTP_401_UNAUTHORIZED
