"""`GET /api/v1/leaderboard/stream`: the live channels as Server-Sent Events."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from channels.db import database_sync_to_async

from accounts.services import token_pair_for_credentials
from conftest import TEST_PASSWORD
from realtime.hub import running_hub
from realtime.tests.conftest import WAIT, index_built
from scoreboard.config import Rate
from scoring.tests.fixtures import GameServerKey, Player

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("live_hub")]


@pytest.fixture
async def ann(make_player: Callable[..., Player], settings: Any, live_mode: str) -> Player:
    settings.SCOREBOARD_BROADCAST_INTERVAL_MS = 50
    settings.SCOREBOARD_RATE_SCORE_UPDATES = Rate(1000, 60)
    player = await database_sync_to_async(make_player)(username="ann", country="FR")
    if live_mode == "redis":
        await database_sync_to_async(index_built)()
    return player


def access_token(player: Player) -> str:
    return token_pair_for_credentials(username=player.user.username, password=TEST_PASSWORD).access


async def test_the_stream_sends_the_snapshot_then_every_update(
    open_stream: Any, ann: Player, game_server: GameServerKey
) -> None:
    stream = await open_stream(
        "channel=leaderboard.top10", await database_sync_to_async(access_token)(ann)
    )
    status, headers, _ = await stream.start()
    assert status == 200
    assert headers["cache-control"] == "no-cache"
    event, snapshot = await stream.event()
    assert (event, snapshot["snapshot"], snapshot["leaderboard"]) == (
        "leaderboard.update",
        True,
        [],
    )

    response = await database_sync_to_async(ann.score_action)(game_server)
    assert response.status_code == 200
    event, update = await stream.event()
    assert (event, update["seq"], update["snapshot"]) == (
        "leaderboard.update",
        snapshot["seq"] + 1,
        False,
    )
    assert [r["username"] for r in update["leaderboard"]] == ["ann"]


async def test_a_ticket_works_for_clients_that_cannot_send_headers(
    open_stream: Any, ann: Player
) -> None:
    response = await database_sync_to_async(ann.client.post)("/api/v1/realtime/ticket")
    ticket = response.json()["data"]["ticket"]
    stream = await open_stream(f"channel=leaderboard.country.FR.top10&ticket={ticket}")
    assert (await stream.start())[0] == 200
    assert (await stream.event())[1]["channel"] == "leaderboard.country.FR.top10"


@pytest.mark.parametrize(
    ("query", "with_token", "status", "code"),
    [
        ("channel=leaderboard.top10", False, 401, "UNAUTHORIZED"),
        ("channel=leaderboard.top10&ticket=made-up", False, 401, "UNAUTHORIZED"),
        ("channel=leaderboard.top11", True, 400, "INVALID_INPUT"),
        ("", True, 400, "INVALID_INPUT"),
    ],
)
async def test_refusals_use_the_error_envelope(
    open_stream: Any, ann: Player, query: str, with_token: bool, status: int, code: str
) -> None:
    token = await database_sync_to_async(access_token)(ann) if with_token else None
    stream = await open_stream(query, token)
    got_status, _, body = await stream.start()
    assert got_status == status
    assert json.loads(body)["error"]["code"] == code
    assert running_hub().subscriber_count() == 0


async def test_a_closed_stream_leaves_the_hub(open_stream: Any, ann: Player) -> None:
    stream = await open_stream(
        "channel=leaderboard.top10", await database_sync_to_async(access_token)(ann)
    )
    await stream.start()
    await stream.event()
    assert running_hub().subscriber_count("leaderboard.top10") == 1
    await stream.communicator.send_input({"type": "http.disconnect"})
    await stream.communicator.wait(timeout=WAIT)
    assert running_hub().subscriber_count() == 0


async def test_the_stream_ends_within_a_heartbeat_once_the_user_is_deactivated(
    open_stream: Any, ann: Player, settings: Any
) -> None:
    settings.SCOREBOARD_WS_HEARTBEAT_SECONDS = 1
    stream = await open_stream(
        "channel=leaderboard.top10", await database_sync_to_async(access_token)(ann)
    )
    await stream.start()
    await stream.event()
    ann.user.is_active = False
    await database_sync_to_async(ann.user.save)()
    event, data = await stream.event()
    while event != "error":
        event, data = await stream.event()
    assert data["code"] == "UNAUTHORIZED"
    end = await stream.communicator.receive_output(timeout=WAIT)
    while end.get("more_body"):
        end = await stream.communicator.receive_output(timeout=WAIT)
    assert end["type"] == "http.response.body"
    assert running_hub().subscriber_count() == 0
