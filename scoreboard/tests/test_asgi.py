"""The one ASGI application, driven with ASGI messages as a server would."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from channels.testing import WebsocketCommunicator

from scoreboard.asgi import application

pytestmark = pytest.mark.django_db(transaction=True)


async def call_http(
    path: str, chunks: list[bytes], headers: list[tuple[bytes, bytes]]
) -> tuple[int, dict[bytes, bytes], bytes]:
    """Send one HTTP request through the ASGI app, the body in the given chunks."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1"), *headers],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }
    messages: list[dict[str, Any]] = [
        {"type": "http.request", "body": chunk, "more_body": index < len(chunks) - 1}
        for index, chunk in enumerate(chunks)
    ]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop(0)
        await asyncio.Event().wait()  # like a server: no disconnect while the client waits
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await application(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], dict(start["headers"]), body


async def test_a_streamed_body_past_64_kib_is_refused_before_django_reads_it() -> None:
    chunks = [b'{"username": "'] + [b"a" * 16384] * 5

    status, headers, body = await call_http(
        "/api/v1/auth/register", chunks, [(b"content-type", b"application/json")]
    )

    assert status == 413
    error = json.loads(body)["error"]
    assert error["code"] == "PAYLOAD_TOO_LARGE"
    assert error["requestId"] == headers[b"x-request-id"].decode()


async def test_a_declared_oversized_body_is_refused_at_once() -> None:
    status, _, body = await call_http(
        "/api/v1/auth/register",
        [b"{}"],
        [(b"content-type", b"application/json"), (b"content-length", b"1048576")],
    )

    assert status == 413
    assert json.loads(body)["error"]["code"] == "PAYLOAD_TOO_LARGE"


async def test_a_body_within_the_limit_reaches_the_view_whole() -> None:
    body = json.dumps({"username": "chunky", "email": "c@example.com"}).encode()

    status, _, response = await call_http(
        "/api/v1/auth/register",
        [body[:10], body[10:]],
        [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
    )

    assert status == 400
    assert json.loads(response)["error"]["details"] == {"password": ["This field is required."]}


async def test_websocket_on_an_unknown_path_is_refused_cleanly() -> None:
    communicator = WebsocketCommunicator(application, "/ws/no-such-board")

    connected, code = await communicator.connect()

    assert (connected, code) == (False, 4404)


async def test_websocket_from_a_foreign_browser_origin_is_refused_before_routing() -> None:
    communicator = WebsocketCommunicator(
        application,
        "/ws/anything",
        headers=[(b"origin", b"https://evil.example"), (b"host", b"127.0.0.1")],
    )

    connected, code = await communicator.connect()

    assert (connected, code) == (False, 1000)


async def test_websocket_from_an_allowed_browser_origin_reaches_the_routes() -> None:
    communicator = WebsocketCommunicator(
        application,
        "/ws/anything",
        headers=[(b"origin", b"http://127.0.0.1:8000"), (b"host", b"127.0.0.1")],
    )

    connected, code = await communicator.connect()

    assert (connected, code) == (False, 4404)
