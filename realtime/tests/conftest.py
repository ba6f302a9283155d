"""Live boards run in two modes: this process alone (in-memory channel layer, local broadcast
state, SQL boards) or a Redis cluster (pub/sub channel layer, shared state, Redis boards).
`live_mode` runs a test in each."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from channels.layers import get_channel_layer

from leaderboard.services import leaderboard_rebuild
from realtime.hub import stop_hub
from realtime.state import reset_local_state
from scoreboard import config
from scoring.periods import DEFAULT_BOARD


@pytest.fixture(params=["embedded", "redis"])
def live_mode(request: pytest.FixtureRequest, settings: Any) -> Iterator[str]:
    reset_local_state()
    if request.param == "redis":
        redis_url = request.getfixturevalue("redis_url")
        request.getfixturevalue("redis_index")
        settings.CHANNEL_LAYERS = config.channel_layers_config(
            {"REDIS_URL": redis_url, "REDIS_KEY_PREFIX": settings.REDIS_KEY_PREFIX}
        )
    else:
        settings.REDIS_URL = None
        settings.CACHES = config.cache_config({})
        settings.CHANNEL_LAYERS = config.channel_layers_config({})
    yield request.param
    reset_local_state()


@pytest.fixture
async def live_hub(live_mode: str) -> AsyncIterator[None]:
    """The hub of the test's event loop is stopped at the end, and the in-memory layer
    forgets its groups, so nothing carries over into the next test."""
    yield
    await stop_hub()
    layer = get_channel_layer()
    if hasattr(layer, "flush"):
        await layer.flush()


def index_built() -> None:
    """In Redis mode, build the index so boards are read from Redis, not the fallback."""
    leaderboard_rebuild(board=DEFAULT_BOARD)
