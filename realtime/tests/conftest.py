"""Live boards run in two modes: this process alone (in-memory channel layer, local broadcast
state, SQL boards) or a Redis cluster (pub/sub channel layer, shared state, Redis boards).
`live_mode` runs a test in each."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from asgiref.testing import ApplicationCommunicator
from channels.layers import get_channel_layer

from leaderboard.services import leaderboard_rebuild
from realtime.hub import stop_hub
from realtime.state import reset_local_state
from scoreboard import config
from scoreboard.asgi import application
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


# --- the event stream, as a client reads it ---

WAIT = 10


class Stream:
    def __init__(self, communicator: ApplicationCommunicator) -> None:
        self.communicator = communicator
        self.buffer = ""

    async def start(self) -> tuple[int, dict[str, str], bytes]:
        """Status, headers and, for a plain response, its body."""
        start = await self.communicator.receive_output(timeout=WAIT)
        headers = {k.decode().lower(): v.decode() for k, v in start["headers"]}
        if headers.get("content-type") == "text/event-stream":
            return start["status"], headers, b""
        body = await self.communicator.receive_output(timeout=WAIT)
        return start["status"], headers, body["body"]

    async def event(self) -> tuple[str, dict[str, Any]]:
        """The next event (comments and `retry:` skipped)."""
        while "\n\n" not in self.buffer:
            chunk = await self.communicator.receive_output(timeout=WAIT)
            self.buffer += chunk["body"].decode()
        block, self.buffer = self.buffer.split("\n\n", 1)
        fields = dict(
            line.split(": ", 1) for line in block.splitlines() if not line.startswith(":")
        )
        if "event" not in fields:
            return await self.event()
        return fields["event"], json.loads(fields["data"])


@pytest.fixture
async def open_stream() -> AsyncIterator[Callable[..., Any]]:
    opened: list[ApplicationCommunicator] = []

    async def open_(query: str, token: str | None = None) -> Stream:
        headers = [(b"host", b"testserver"), (b"accept", b"text/event-stream")]
        if token:
            headers.append((b"authorization", f"Bearer {token}".encode()))
        communicator = ApplicationCommunicator(
            application,
            {
                "type": "http",
                "asgi": {"version": "3.0"},
                "http_version": "1.1",
                "method": "GET",
                "scheme": "http",
                "path": "/api/v1/leaderboard/stream",
                "raw_path": b"/api/v1/leaderboard/stream",
                "root_path": "",
                "query_string": query.encode(),
                "headers": headers,
                "client": ("127.0.0.1", 50000),
                "server": ("testserver", 80),
            },
        )
        await communicator.send_input({"type": "http.request", "body": b"", "more_body": False})
        opened.append(communicator)
        return Stream(communicator)

    yield open_
    for communicator in opened:
        await communicator.send_input({"type": "http.disconnect"})
        await communicator.wait(timeout=WAIT)
