"""Live-board metrics, in the embedded mode and with Redis: open connections by transport,
the frames written to them, and each publication with its lag from the change it carries."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator

from accounts.services import token_pair_for_credentials
from conftest import TEST_PASSWORD
from realtime import broadcast
from realtime.boards import channels_showing
from realtime.broadcast import flush_changed_channels
from realtime.state import broadcast_state
from realtime.tests.conftest import WAIT, index_built
from scoreboard.asgi import application
from scoreboard.config import Rate
from scoreboard.tests.metric_samples import RegistryDelta, registry_value
from scoring.periods import DEFAULT_BOARD
from scoring.tests.fixtures import GameServerKey, Player

TOP10 = "leaderboard.top10"
LAG = "scoreboard_live_broadcast_lag_seconds"
PUBLISHED = "scoreboard_live_broadcasts_published_total"
CONNECTIONS = "scoreboard_live_connections"
FRAMES = "scoreboard_live_frames_sent_total"


@pytest.fixture(autouse=True)
def _fast_live(settings: Any, live_mode: str) -> None:
    settings.SCOREBOARD_BROADCAST_INTERVAL_MS = 50
    settings.SCOREBOARD_RATE_SCORE_UPDATES = Rate(1000, 60)


def access_token(player: Player) -> str:
    return token_pair_for_credentials(username=player.user.username, password=TEST_PASSWORD).access


async def eventually(condition: Callable[[], bool]) -> None:
    """Counters move right after the frame leaves, so give the writer its turn."""
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


# --- publications and their lag -------------------------------------------------------------


@pytest.mark.django_db
def test_each_publication_is_counted_with_its_lag_from_the_first_change(
    live_mode: str,
    make_player: Callable[..., Player],
    game_server: GameServerKey,
    django_capture_on_commit_callbacks: Any,
) -> None:
    if live_mode == "redis":
        index_built()
    ann = make_player(username="ann", country="FR")
    published = RegistryDelta((PUBLISHED, {}), (f"{LAG}_count", {}))
    lag_before = registry_value(f"{LAG}_sum")

    def score() -> None:
        with django_capture_on_commit_callbacks(execute=True):
            assert ann.score_action(game_server).status_code == 200

    first_change = time.time()
    score()
    first_marked = time.time()
    time.sleep(0.1)
    score()  # changes the same channels again before they are published
    time.sleep(0.1)
    before_flush = time.time()
    publications = flush_changed_channels()
    after_flush = time.time()

    channels = channels_showing(board=DEFAULT_BOARD, countries=["FR"])
    assert len(publications) == len(channels) == 5
    assert published() == [5, 5]
    lag = registry_value(f"{LAG}_sum") - lag_before
    # Measured from the first change of each channel, not the second.
    assert 5 * (before_flush - first_marked) <= lag <= 5 * (after_flush - first_change)


@pytest.mark.django_db
def test_a_publication_that_failed_keeps_the_time_of_its_change(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    broadcast_state().mark_dirty([TOP10], marked_at=1000.0)

    def unreadable(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("board unreadable")

    monkeypatch.setattr(broadcast, "live_rows", unreadable)
    published = RegistryDelta((PUBLISHED, {}))
    assert flush_changed_channels() == []
    time.sleep(0.06)

    (claim,) = broadcast_state().claim_due(50)
    assert (claim.channel, claim.marked_at) == (TOP10, 1000.0)
    assert published() == [0]


# --- connections and frames -----------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("live_hub")
async def test_an_open_websocket_is_counted_until_it_closes_and_its_frames_are_counted(
    live_mode: str, make_player: Callable[..., Player], game_server: GameServerKey
) -> None:
    if live_mode == "redis":
        await database_sync_to_async(index_built)()
    ann = await database_sync_to_async(make_player)(username="ann")
    open_sockets = RegistryDelta((CONNECTIONS, {"transport": "websocket"}))
    frames = RegistryDelta((FRAMES, {"transport": "websocket"}))

    refused = WebsocketCommunicator(application, "/ws/leaderboard?ticket=made-up")
    await refused.connect(timeout=WAIT)
    assert (await refused.receive_output(timeout=WAIT))["code"] == 4401
    assert open_sockets() == [0]

    token = await database_sync_to_async(access_token)(ann)
    socket = WebsocketCommunicator(application, "/ws/leaderboard", subprotocols=["bearer", token])
    assert (await socket.connect(timeout=WAIT))[0] is True
    assert open_sockets() == [1]
    await socket.send_json_to({"event": "subscribe", "data": {"channel": TOP10}})
    assert (await socket.receive_json_from(timeout=WAIT))["data"]["snapshot"] is True
    assert (await database_sync_to_async(ann.score_action)(game_server)).status_code == 200
    received = 1  # the snapshot
    while True:  # (an update for ann's arrival on the site may come first)
        frame = await socket.receive_json_from(timeout=WAIT)
        received += 1
        if frame["event"] == "leaderboard.update" and frame["data"]["leaderboard"]:
            break
    while not await socket.receive_nothing(timeout=0.3):  # the rest of that batch
        await socket.receive_json_from(timeout=WAIT)
        received += 1
    await eventually(lambda: frames() == [received])
    await socket.send_json_to({"event": "ping"})  # a reply, not a board frame
    assert (await socket.receive_json_from(timeout=WAIT))["event"] == "pong"
    assert frames() == [received]

    await socket.disconnect()
    await refused.disconnect()
    assert open_sockets() == [0]


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("live_hub")
async def test_an_open_event_stream_is_counted_until_it_ends(
    make_player: Callable[..., Player], open_stream: Callable[..., Any]
) -> None:
    ann = await database_sync_to_async(make_player)(username="ann")
    token = await database_sync_to_async(access_token)(ann)
    open_streams = RegistryDelta((CONNECTIONS, {"transport": "sse"}))
    frames = RegistryDelta((FRAMES, {"transport": "sse"}))
    stream = await open_stream(f"channel={TOP10}", token)

    assert (await stream.start())[0] == 200
    assert (await stream.event())[0] == "leaderboard.update"  # after `retry: 3000`, the snapshot
    assert open_streams() == [1]
    await eventually(lambda: frames() == [1])

    await stream.communicator.send_input({"type": "http.disconnect"})
    await stream.communicator.wait(timeout=WAIT)
    assert open_streams() == [0]
