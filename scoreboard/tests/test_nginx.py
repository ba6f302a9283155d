"""nginx in front of both kinds of node: the committed load balancer (docker/nginx/) at work.

Debian's nginx with the committed scoreboard.conf, in front of two API nodes (gunicorn) and
two live nodes (uvicorn) on one PostgreSQL database and one Redis: scoreboard/tests/edge.py.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from functools import partial
from typing import Any

import pytest

from realtime.tests.cluster import CHANNEL, EventStream, Node
from scoreboard.tests.edge import Edge, send
from scoreboard.tests.metric_samples import parse_scrape, sample

pytestmark = [pytest.mark.redis, pytest.mark.timeout(120)]

LIVE_PATHS = ("/ws/leaderboard", "/api/v1/leaderboard/stream")
METRICS_TOKEN = "nginx-test-metrics-" + "m" * 20
BODY_LIMIT = 64 * 1024
# A client on another loopback address than nginx's, which claims to forward for someone else.
CLIENT_ADDRESS = "127.0.0.2"
FORGED_CLIENT = "203.0.113.9"
# The nodes trust the whole loopback network as proxies, the client's address included. Were
# nginx to append to the client's X-Forwarded-For, the forged hop would then be believed; only
# a header that nginx replaced yields the client's real address.
TRUSTED_PROXIES = "127.0.0.0/8"


@pytest.fixture
def edge(make_edge: Callable[..., Edge]) -> Edge:
    return make_edge(
        SCOREBOARD_TRUSTED_PROXIES=TRUSTED_PROXIES, SCOREBOARD_METRICS_TOKEN=METRICS_TOKEN
    )


@dataclass(frozen=True)
class ForgingClient(Node):
    """Calls nginx from CLIENT_ADDRESS, always with `X-Forwarded-For: FORGED_CLIENT`."""

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        token: str = "",
        timeout: float = 10,
        **headers: str,
    ) -> tuple[int, Any]:
        if token:
            headers["Authorization"] = f"Bearer {token}"
        status, _, payload = send(
            self.base_url,
            method,
            path,
            json.dumps(body).encode() if body is not None else None,
            headers={
                "Content-Type": "application/json",
                "X-Forwarded-For": FORGED_CLIENT,
                **headers,
            },
            source=CLIENT_ADDRESS,
            timeout=timeout,
        )
        return status, json.loads(payload)


# ---- the tests ---------------------------------------------------------------------------


def test_requests_are_spread_over_both_api_nodes_and_go_around_a_dead_one(edge: Edge) -> None:
    a, b = edge.api

    # Requests one after another go to both API nodes (least_conn on equal counts takes
    # turns), never to a live node.
    for number in range(8):
        assert edge.get("/healthz", f"spread-{number}")[0] == 200
    answered = [edge.answered_by(f"spread-{number}") for number in range(8)]
    assert set(answered) == edge.addresses(edge.api), answered

    # When API node B dies without a word...
    edge.kill(b)

    # ...reads are still answered, all by node A: a request that finds B gone is retried on A,
    # and from that first failure on B is left out...
    statuses = [edge.get("/healthz", f"after-{number}")[0] for number in range(8)]
    assert statuses == [200] * 8, edge.logs()
    assert {edge.answered_by(f"after-{number}") for number in range(8)} == {edge.address(a)}
    # ...and so are writes (which nginx never repeats once a node may have received them).
    for _ in range(3):
        edge.cluster.register(edge.nginx, "Survivor")

    # When the last node dies too, nginx itself answers 503 with the API's envelope.
    edge.kill(a)
    status, body = edge.get("/api/v1/leaderboard/top", "all-down")
    assert status == 503
    assert body["error"]["code"] == "SERVICE_UNAVAILABLE"
    assert body["error"]["requestId"] == "all-down"


async def test_live_boards_flow_through_nginx(edge: Edge) -> None:
    cluster, nginx = edge.cluster, edge.nginx
    watcher = await asyncio.to_thread(cluster.register, nginx, "Watcher")
    scorer = await asyncio.to_thread(cluster.register, nginx, "Scorer")
    ticket = await asyncio.to_thread(nginx.ticket, watcher)
    async with AsyncExitStack() as stack:
        # Two WebSockets through nginx: upgraded, and (least_conn) one on each live node.
        first = await cluster.socket(stack, f"{nginx.ws_url}?ticket={ticket}")
        second = await cluster.socket(stack, nginx.ws_url, subprotocols=["bearer", scorer.access])
        responses = [client.ws.response for client in (first, second)]
        assert [r.status_code if r else None for r in responses] == [101, 101]
        assert second.ws.subprotocol == "bearer"
        snapshots = [await cluster.subscribed(client) for client in (first, second)]
        seq = snapshots[0].data["seq"]
        assert [s.data["leaderboard"] for s in snapshots] == [[], []]

        # The event stream through nginx: its snapshot arrives at once, not held in a buffer.
        stream = await EventStream.open(
            nginx, f"/api/v1/leaderboard/stream?channel={CHANNEL}", token=watcher.access
        )
        stack.push_async_callback(stream.close)
        await cluster.eventually(lambda: stream.status or None, "response to the stream")
        assert stream.status == 200, stream.error_body
        assert (await cluster.subscribed(stream)).data["channel"] == CHANNEL

        # When a score is posted through nginx (to an API node)...
        await asyncio.to_thread(cluster.score, nginx, scorer, "WIN_GAME")

        # ...both sockets and the stream, on the live nodes, get the update.
        for client in (first, second, stream):
            update = await cluster.eventually(partial(client.update_with_seq, seq + 1), "update")
            rows = update.data["leaderboard"]
            assert [(r["userId"], r["score"]) for r in rows] == [(scorer.user_id, 100)]

    # Closed, the two sockets and the stream are in the access log: one socket on each live
    # node, the stream on a live node too...
    def live_entries() -> list[dict[str, Any]] | None:
        entries = [e for e in edge.log_entries() if e["path"] in LIVE_PATHS]
        return entries if len(entries) == 3 else None

    entries = await asyncio.to_thread(edge.wait_for, live_entries, "three live log lines")
    sockets = [e for e in entries if e["path"] == "/ws/leaderboard"]
    assert [e["status"] for e in sockets] == [101, 101]
    assert {e["upstream"] for e in sockets} == edge.addresses(edge.live)
    [stream_entry] = [e for e in entries if e["path"] == "/api/v1/leaderboard/stream"]
    assert stream_entry["status"] == 200
    assert stream_entry["upstream"] in edge.addresses(edge.live)
    # ...and every other request (registrations, the ticket, the score) went to an API node.
    rest = [e for e in edge.log_entries() if e["path"] not in LIVE_PATHS]
    assert {e["path"] for e in rest} >= {"/api/v1/realtime/ticket", "/api/v1/scores/update"}
    assert {e["upstream"] for e in rest} <= edge.addresses(edge.api), rest


def test_the_app_sees_the_client_not_a_forwarded_for_it_sent(edge: Edge) -> None:
    import psycopg

    # Given a client on 127.0.0.2 that sends X-Forwarded-For: 203.0.113.9 with every request...
    client = ForgingClient("client", edge.nginx.base_url, edge.nginx.log_path)
    player = edge.cluster.register(client, "Claimant")

    # ...when it scores through nginx...
    edge.cluster.score(client, player, "COMPLETE_QUEST")

    # ...the score update records the address nginx saw, not the forged one (nor nginx's).
    with psycopg.connect(edge.database_url, connect_timeout=3) as connection:
        rows = connection.execute(
            "SELECT ip_address FROM scoring_scoreupdate WHERE user_id = %s", [player.user_id]
        ).fetchall()
    assert [str(address) for (address,) in rows] == [CLIENT_ADDRESS]


def test_nginx_keeps_metrics_inside_and_oversized_bodies_out(edge: Edge) -> None:
    # /metrics is answered by nginx itself (no node in the log), with the API's 404 envelope.
    for number, path in enumerate(["/metrics", "/metrics/", "/metrics?name=x", "//metrics"]):
        status, body = edge.get(path, f"metrics-{number}")
        assert status == 404, path
        assert body["error"]["code"] == "NOT_FOUND"
        assert body["error"]["requestId"] == f"metrics-{number}"
        assert edge.log_entry(f"metrics-{number}")["upstream"] == ""

    # Prometheus scrapes each API node directly, and whichever of its gunicorn workers answers
    # reports the requests of them all (PROMETHEUS_MULTIPROC_DIR).
    node = edge.api[0]
    for number in range(12):
        assert send(node.base_url, "GET", f"/no-such-page-{number}")[0] == 404
    for _ in range(4):
        status, _, scrape = send(
            node.base_url, "GET", "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}
        )
        assert status == 200
        samples = parse_scrape(scrape.decode())
        labels = {"method": "GET", "route": "unmatched", "status": "404"}
        assert sample(samples, "http_requests_total", **labels) == 12

    def post(size: int, request_id: str) -> tuple[int, dict[str, Any]]:
        status, _, body = send(
            edge.nginx.base_url,
            "POST",
            "/api/v1/auth/register",
            b"x" * size,
            headers={"Content-Type": "application/json", "X-Request-ID": request_id},
        )
        return status, json.loads(body)

    # A body of 64 KiB reaches a node (which finds it is no JSON)...
    status, body = post(BODY_LIMIT, "at-limit")
    assert (status, body["error"]["code"]) == (400, "INVALID_INPUT")
    assert edge.log_entry("at-limit")["upstream"] != ""

    # ...one byte more is refused by nginx, with the API's envelope.
    status, body = post(BODY_LIMIT + 1, "over-limit")
    assert (status, body["error"]["code"]) == (413, "PAYLOAD_TOO_LARGE")
    assert body["error"]["requestId"] == "over-limit"
    assert edge.log_entry("over-limit")["upstream"] == ""
