"""Hiding (PATCH users/me) and erasing (DELETE users/me) through the API reach the live boards:
subscribers get a `leaderboard.update` without the player, and the erased player's own socket
is closed. In the embedded mode and with Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator

from conftest import TEST_PASSWORD
from realtime.tests.conftest import index_built
from realtime.tests.test_consumer import TOP10, WAIT, Socket, ticket
from scoreboard.asgi import application
from scoreboard.config import Rate
from scoring.tests.fixtures import GameServerKey, Player

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("live_hub")]

ME_URL = "/api/v1/users/me"
FRENCH_TOP10 = "leaderboard.country.FR.top10"


@pytest.fixture(autouse=True)
def _fast_live(settings: Any, live_mode: str) -> None:
    settings.SCOREBOARD_BROADCAST_INTERVAL_MS = 50
    settings.SCOREBOARD_WS_HEARTBEAT_SECONDS = 1
    settings.SCOREBOARD_RATE_SCORE_UPDATES = Rate(1000, 60)
    if live_mode == "redis":
        index_built()


@pytest.fixture
async def subscribed() -> AsyncIterator[Callable[..., Any]]:
    """Open a socket for a player (with a ticket), subscribe it to a channel and let the
    broadcasts already on their way arrive; returns the socket and the last board it got."""
    opened: list[WebsocketCommunicator] = []

    async def subscribe(player: Player, channel: str = TOP10) -> tuple[Socket, dict[str, Any]]:
        issued = await database_sync_to_async(ticket)(player)
        communicator = WebsocketCommunicator(application, f"/ws/leaderboard?ticket={issued}")
        opened.append(communicator)
        accepted, detail = await communicator.connect(timeout=WAIT)
        socket = Socket(communicator, accepted, detail)
        last = await socket.subscribe(channel)
        while not await socket.nothing_more():
            last = await socket.receive_event("leaderboard.update")
        return socket, last

    yield subscribe
    for communicator in opened:
        await communicator.disconnect()


@pytest.fixture
async def ann_and_bob_on_the_board(
    make_player: Callable[..., Player], game_server: GameServerKey
) -> tuple[Player, Player]:
    ann = await database_sync_to_async(make_player)(username="ann", country="FR")
    bob = await database_sync_to_async(make_player)(username="bob", country="FR")
    for player in (ann, bob):
        response = await database_sync_to_async(player.score_action)(game_server)
        assert response.status_code == 200, response.content
    return ann, bob


def usernames(update: dict[str, Any]) -> list[str]:
    return [row["username"] for row in update["leaderboard"]]


@pytest.mark.parametrize(
    ("method", "body"),
    [
        pytest.param("patch", {"hideFromLeaderboards": True}, id="hide"),
        pytest.param("delete", {"password": TEST_PASSWORD}, id="erase"),
    ],
)
async def test_a_player_who_leaves_through_the_api_leaves_the_live_board(
    subscribed: Callable[..., Any],
    ann_and_bob_on_the_board: tuple[Player, Player],
    method: str,
    body: dict[str, Any],
) -> None:
    # given bob watching the all-time and the French board, which show ann and him
    ann, bob = ann_and_bob_on_the_board
    watching = [await subscribed(bob, channel) for channel in (TOP10, FRENCH_TOP10)]
    for _, board in watching:
        assert usernames(board) == ["ann", "bob"]

    # when ann hides or erases her account
    send = getattr(ann.client, method)
    response = await database_sync_to_async(send)(ME_URL, body, format="json")
    assert response.status_code in (200, 204), response.content

    # then the next update of each channel shows bob alone
    for socket, board in watching:
        after = await socket.receive_event("leaderboard.update")
        assert (after["seq"], usernames(after)) == (board["seq"] + 1, ["bob"])


async def test_the_erased_players_own_socket_is_closed_4401(
    subscribed: Callable[..., Any], ann_and_bob_on_the_board: tuple[Player, Player]
) -> None:
    # given ann watching the board
    ann, _ = ann_and_bob_on_the_board
    socket, _ = await subscribed(ann)

    # when she erases her account
    response = await database_sync_to_async(ann.client.delete)(
        ME_URL, {"password": TEST_PASSWORD}, format="json"
    )
    assert response.status_code == 204, response.content

    # then her socket is closed within a heartbeat, as for any revoked credential
    assert await socket.close_code() == 4401
