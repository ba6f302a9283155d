"""The hub makes good a publication that never reached it: its local subscribers get a fresh
snapshot once the channel's cluster-wide `seq` has stayed ahead of what they were given."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer

from realtime.boards import live_channel
from realtime.broadcast import mark_changed
from realtime.frames import Batch
from realtime.hub import Hub, resync_check_seconds
from realtime.tests.conftest import index_built
from scoreboard.tests.metric_samples import registry_value
from scoring.periods import DEFAULT_BOARD
from scoring.tests.fixtures import GameServerKey, Player

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("live_hub")]

TOP10 = "leaderboard.top10"


class LossyLayer:
    """The channel layer, but the first send to `group` goes nowhere, as a batch published
    while a node's pub/sub subscription is down."""

    def __init__(self, layer: Any, group: str) -> None:
        self.layer = layer
        self.group: str | None = group

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        if group == self.group:
            self.group = None
            return
        await self.layer.group_send(group, message)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.layer, name)


class Collected:
    def __init__(self) -> None:
        self.batches: list[Batch] = []

    def deliver(self, batch: Batch) -> None:
        self.batches.append(batch)


async def test_a_lost_publication_reaches_local_subscribers_as_a_snapshot(
    settings: Any,
    live_mode: str,
    make_player: Callable[..., Player],
    game_server: GameServerKey,
) -> None:
    settings.SCOREBOARD_BROADCAST_INTERVAL_MS = 50
    ann = await database_sync_to_async(make_player)(username="ann", country="FR")
    if live_mode == "redis":
        await database_sync_to_async(index_built)()
    channel = live_channel(TOP10)
    assert channel is not None
    hub = Hub(LossyLayer(get_channel_layer(), channel.group))
    subscriber = Collected()
    resyncs = registry_value("scoreboard_live_resyncs_total")
    try:
        await hub.join(channel, subscriber)
        response = await database_sync_to_async(ann.score_action)(game_server)
        assert response.status_code == 200
        score = response.json()["data"]["newScore"]

        # The publication is lost; within two checks the hub notices and resyncs.
        deadline = asyncio.get_running_loop().time() + 4 * resync_check_seconds() + 2
        while not subscriber.batches and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
    finally:
        await hub.stop()

    [batch] = subscriber.batches
    [frame] = batch.frames
    assert frame.event == "leaderboard.update"
    assert '"snapshot":true' in frame.data_json
    assert f'"score":{score}' in frame.data_json
    assert batch.seq == 1
    assert registry_value("scoreboard_live_resyncs_total") == resyncs + 1


async def test_a_channel_whose_publications_arrive_is_never_resynced(
    settings: Any, live_mode: str
) -> None:
    settings.SCOREBOARD_BROADCAST_INTERVAL_MS = 50
    hub = Hub(get_channel_layer())
    channel = live_channel(TOP10)
    assert channel is not None
    subscriber = Collected()
    resyncs = registry_value("scoreboard_live_resyncs_total")
    try:
        await hub.join(channel, subscriber)
        # The first change publishes the (empty) board; then it stays still for three checks.
        await database_sync_to_async(mark_changed)(board=DEFAULT_BOARD, countries=["FR"])
        await asyncio.sleep(3 * resync_check_seconds())
    finally:
        await hub.stop()

    assert [batch.seq for batch in subscriber.batches] == [1]
    assert '"snapshot":false' in subscriber.batches[0].frames[0].data_json
    assert registry_value("scoreboard_live_resyncs_total") == resyncs
