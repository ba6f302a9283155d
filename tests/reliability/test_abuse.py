"""Abuse, from outside against real nodes: forged and stale JWTs, a client rotating
X-Forwarded-For, a burst past a limit, WebSocket misuse, and injection strings in every text
field. Every refusal is a 4xx in the error envelope (never a 5xx), and nothing changes."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import subprocess
import time
import urllib.parse
import uuid
import warnings
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack, suppress
from pathlib import Path
from typing import Any

import jwt
import psycopg
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from conftest import TEST_PASSWORD
from realtime.tests.cluster import CHANNEL, NODE_SETTINGS, Cluster, Earned, Node
from scoreboard.tests.edge import send
from tests.reliability.ledger import Outcomes, assert_ledger_holds
from tests.reliability.load import (
    ACTION,
    METRICS_TOKEN,
    Listener,
    SteadyLoad,
    earn_many,
    live_connections,
    scored,
    spend_and_record,
)
from tests.reliability.report import Report, Row

SIGNING_KEY = NODE_SETTINGS["SCOREBOARD_JWT_SIGNING_KEY"]
BURST = 100
PER_PLAYER_LIMIT = 10
PER_IP_LIMIT = 20
ROTATED_REQUESTS = 30
LET_GO_SECONDS = 150.0
# A second loopback address: the rotating client's own, so no other request counts against it.
ROTATING_CLIENT = "127.0.0.3"
INJECTIONS = (
    "'; DROP TABLE accounts_user; --",
    '" OR 1=1 --',
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    "{{7*7}}${7*7}",
    "../../etc/passwd",
)


def assert_envelope(status: int, body: Any, code: str) -> None:
    assert body["success"] is False, body
    assert body["error"]["code"] == code, (status, body)
    assert {"message", "timestamp", "requestId"} <= set(body["error"])


def forged(claims: dict[str, Any], *, algorithm: str = "HS256", **changes: Any) -> str:
    with warnings.catch_warnings():  # HS512 would like a longer key: no matter, it is refused
        warnings.simplefilter("ignore", jwt.warnings.InsecureKeyLengthWarning)
        return jwt.encode({**claims, **changes}, SIGNING_KEY, algorithm=algorithm)


def window_not_about_to_turn(seconds: float = 10.0) -> None:
    """Wait, if need be, until a fixed one-minute window has `seconds` left: a burst that
    straddled its edge would be counted in two windows."""
    while time.time() % 60 > 60 - seconds:
        time.sleep(0.2)


def test_forged_stale_and_misused_tokens_are_refused_by_a_real_node(
    make_cluster: Callable[..., Cluster], reliability_report: Report
) -> None:
    cluster = make_cluster()
    node = cluster.a
    player = cluster.register(node, "forger")
    status, body = node.call(
        "POST", "/api/v1/auth/token", {"username": player.username, "password": TEST_PASSWORD}
    )
    refresh = body["data"]["refreshToken"]
    claims = jwt.decode(player.access, options={"verify_signature": False})
    now = int(time.time())
    attempts = {
        "alg none": jwt.encode(claims, "", algorithm="none"),
        "HS512 with the real key": forged(claims, algorithm="HS512"),
        "another key": jwt.encode(claims, "x" * 48, algorithm="HS256"),
        "wrong issuer": forged(claims, iss="someone-else"),
        "wrong audience": forged(claims, aud="another-client"),
        "expired": forged(claims, exp=now - 60, iat=now - 120),
        "refresh token as access": refresh,
        "unknown user": forged(claims, sub=str(uuid.uuid4())),
    }
    answers = {
        name: node.call("GET", "/api/v1/users/me", token=token) for name, token in attempts.items()
    }

    with psycopg.connect(cluster.env["DATABASE_URL"], autocommit=True) as db:
        db.execute("UPDATE accounts_user SET is_active = false WHERE id = %s", [player.user_id])
    answers["deactivated user"] = node.call("GET", "/api/v1/users/me", token=player.access)

    for name, (status, body) in answers.items():
        assert status == 401, (name, body)
        assert_envelope(status, body, "TOKEN_EXPIRED" if name == "expired" else "UNAUTHORIZED")
    reliability_report.add(
        Row(
            scenario="forged and stale JWTs against a node",
            injected=", ".join(answers),
            sent=len(answers),
            accepted=0,
            rejected=len(answers),
            lost=0,
            converged_seconds=None,
        )
    )


def test_rotating_x_forwarded_for_escapes_no_per_ip_limit(
    make_cluster: Callable[..., Cluster], reliability_report: Report
) -> None:
    cluster = make_cluster(SCOREBOARD_RATE_API_PER_IP=f"{PER_IP_LIMIT}/min")
    player = cluster.register(cluster.a, "rotator")  # from 127.0.0.1: counts elsewhere
    window_not_about_to_turn()
    statuses = Counter(
        send(
            cluster.a.base_url,
            "GET",
            "/api/v1/leaderboard/top",
            headers={
                "Authorization": f"Bearer {player.access}",
                "X-Forwarded-For": f"198.51.100.{number}",
            },
            source=ROTATING_CLIENT,
        )[0]
        for number in range(ROTATED_REQUESTS)
    )
    assert statuses == {200: PER_IP_LIMIT, 429: ROTATED_REQUESTS - PER_IP_LIMIT}
    reliability_report.add(
        Row(
            scenario="rotating X-Forwarded-For from one peer",
            injected=f"{ROTATED_REQUESTS} reads, each claiming another address; "
            f"{PER_IP_LIMIT}/min per IP",
            sent=ROTATED_REQUESTS,
            accepted=statuses[200],
            rejected=statuses[429],
            lost=0,
            converged_seconds=None,
        )
    )


def test_a_hundred_parallel_updates_against_a_limit_of_ten_let_exactly_ten_through(
    make_cluster: Callable[..., Cluster], reliability_report: Report
) -> None:
    cluster = make_cluster(SCOREBOARD_RATE_SCORE_UPDATES=f"{PER_PLAYER_LIMIT}/min")
    player = cluster.register(cluster.a, "burst")
    earned = earn_many(cluster, cluster.a, [player], BURST)
    outcomes = Outcomes()
    window_not_about_to_turn()
    with ThreadPoolExecutor(max_workers=BURST) as pool:
        list(
            pool.map(
                lambda turn: spend_and_record(
                    cluster,
                    (cluster.a, cluster.b)[turn % 2],
                    earned[turn],
                    outcomes,
                    allowed=(429,),
                ),
                range(BURST),
            )
        )
    assert outcomes.statuses == {200: PER_PLAYER_LIMIT, 429: BURST - PER_PLAYER_LIMIT}
    assert outcomes.unexpected == []
    checked = assert_ledger_holds(cluster, outcomes)
    reliability_report.add(
        Row.of(
            "100 parallel updates against 10/min",
            f"{BURST} updates by one player at once over two nodes",
            outcomes,
            checked,
        )
    )


async def test_websocket_misuse_is_refused_and_closed(
    make_cluster: Callable[..., Cluster], reliability_report: Report
) -> None:
    cluster = make_cluster()
    node = cluster.a
    player = cluster.register(node, "misuser")
    refused: dict[str, object] = {}
    async with AsyncExitStack() as stack:
        with pytest.raises(InvalidStatus) as foreign:
            await cluster.socket(
                stack,
                f"{node.ws_url}?ticket={node.ticket(player)}",
                origin="https://evil.example",
            )
        refused["foreign Origin"] = foreign.value.response.status_code

        ticket = node.ticket(player)
        first = await cluster.socket(stack, f"{node.ws_url}?ticket={ticket}")
        await cluster.subscribed(first)
        reused = await cluster.socket(stack, f"{node.ws_url}?ticket={ticket}")
        refused["reused ticket"] = await close_code(reused)

        huge = await cluster.socket(stack, f"{node.ws_url}?ticket={node.ticket(player)}")
        with suppress(ConnectionClosed):
            await huge.ws.send("x" * (1024 * 1024))
        refused["1 MiB frame"] = await close_code(huge)

        flooder = await cluster.socket(stack, f"{node.ws_url}?ticket={node.ticket(player)}")
        with suppress(ConnectionClosed):
            for _ in range(200):
                await flooder.send("subscribe", {"channel": CHANNEL})
        refused["subscribe flood"] = await close_code(flooder)

        # The well-behaved socket is still served.
        await first.send("ping", {})
        await cluster.eventually(
            lambda: next((f for f in first.frames if f.event == "pong"), None), "a pong"
        )

    assert refused == {
        "foreign Origin": 403,
        "reused ticket": 4401,
        "1 MiB frame": 4429,
        "subscribe flood": 4429,
    }
    reliability_report.add(
        Row(
            scenario="WebSocket misuse",
            injected="; ".join(f"{name} → {code}" for name, code in refused.items()),
            sent=len(refused),
            accepted=0,
            rejected=len(refused),
            lost=0,
            converged_seconds=None,
        )
    )


async def close_code(socket: Any) -> int | None:
    """The code the server closed the socket with (waiting up to 10 s for it)."""
    with suppress(ConnectionClosed):
        await asyncio.wait_for(asyncio.shield(socket.reader), timeout=10)
    return int(socket.ws.close_code) if socket.ws.close_code is not None else None


def test_injection_strings_in_every_text_field_change_nothing(
    make_cluster: Callable[..., Cluster], reliability_report: Report
) -> None:
    cluster = make_cluster()
    node = cluster.a
    player = cluster.register(node, "quoted")
    refused: list[tuple[str, int, Any]] = []
    stored = 0
    for number, text in enumerate(INJECTIONS):
        for field in ("username", "country", "avatar"):
            registration = {
                "username": f"injected{number}{field}",
                "email": f"injected{number}{field}@example.com",
                "password": TEST_PASSWORD,
                "country": "US",
                field: text,
            }
            status, body = node.call("POST", "/api/v1/auth/register", registration)
            if status == 201:  # taken as text, and given back as it was sent
                assert body["data"][field] == text, body
                stored += 1
            else:
                refused.append((f"register {field}", status, body))
        status, body = node.call("PATCH", "/api/v1/users/me", {"avatar": text}, token=player.access)
        if status != 200:
            refused.append(("profile avatar", status, body))
        status, earned = cluster.earn(node, player, ACTION)
        assert isinstance(earned, Earned), (status, earned)
        for field in ("actionType", "actionId", "timestamp", "clientSignature"):
            update = {**earned.update, field: text}
            status, body = cluster.spend(
                node, Earned(player, earned.action_id, earned.token, update)
            )
            refused.append((f"scores/update {field}", status, body))
        query = urllib.parse.urlencode({"country": text})
        status, body = node.call("GET", f"/api/v1/leaderboard/top?{query}", token=player.access)
        refused.append(("leaderboard country", status, body))

    for where, status, body in refused:
        assert 400 <= status < 500, (where, status, body)
        assert body["success"] is False, (where, body)
        assert "code" in body["error"], (where, body)
    with psycopg.connect(cluster.env["DATABASE_URL"]) as db:
        (users,) = db.execute("SELECT count(*) FROM accounts_user").fetchone() or (0,)
        (updates,) = db.execute("SELECT count(*) FROM scoring_scoreupdate").fetchone() or (0,)
    assert (users, updates) == (1 + stored, 0)
    assert node.call("GET", "/api/v1/users/me", token=player.access)[0] == 200
    sent = len(INJECTIONS) * 9
    reliability_report.add(
        Row(
            scenario="SQL and HTML injection strings",
            injected=f"{len(INJECTIONS)} strings in registration, profile, score update and "
            "board query fields",
            sent=sent,
            accepted=sent - len(refused),
            rejected=len(refused),
            lost=0,
            converged_seconds=None,
        )
    )


def stuck_client(node: Node, ticket: str) -> socket.socket:
    """A WebSocket that subscribes and then never reads again, with a tiny receive buffer: the
    node's writes back up into its own buffers."""
    address = urllib.parse.urlsplit(node.base_url)
    client = socket.socket()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    client.settimeout(10)
    client.connect((address.hostname or "127.0.0.1", address.port or 80))
    key = base64.b64encode(os.urandom(16)).decode()
    client.sendall(
        f"GET /ws/leaderboard?ticket={ticket} HTTP/1.1\r\nHost: {address.netloc}\r\n"
        "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
        f"Sec-WebSocket-Key: {key}\r\n\r\n".encode()
    )
    response = b""
    while b"\r\n\r\n" not in response:
        response += client.recv(1)
    assert response.startswith(b"HTTP/1.1 101"), response
    payload = json.dumps({"event": "subscribe", "data": {"channel": CHANNEL}}).encode()
    mask = os.urandom(4)
    masked = bytes(byte ^ mask[index % 4] for index, byte in enumerate(payload))
    client.sendall(bytes([0x81, 0x80 | len(payload)]) + mask + masked)
    return client


def rss_kib(process: subprocess.Popen[bytes]) -> int:
    status = Path(f"/proc/{process.pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmRSS:")).split()[1])


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_a_client_that_never_reads_is_let_go_and_others_are_unaffected(
    make_cluster: Callable[..., Cluster],
    server_processes: dict[str, subprocess.Popen[bytes]],
    reliability_report: Report,
) -> None:
    cluster = make_cluster(
        SCOREBOARD_BROADCAST_INTERVAL_MS="50",
        SCOREBOARD_WS_HEARTBEAT_SECONDS="2",
        SCOREBOARD_METRICS_TOKEN=METRICS_TOKEN,
    )
    node = cluster.a
    players = [cluster.register(node, "reader") for _ in range(10)]
    # Long avatars: every board frame is several kilobytes. Even so the kernel takes the stuck
    # socket's backlog up to its send buffer's limit (tcp_wmem, 4 MiB here) before the node's
    # own writes block and it closes the socket (4408): about a minute at 20 updates a second.
    for player in players:
        avatar = f"https://cdn.example.com/avatars/{player.username}/{'a' * 440}.png"
        status, body = node.call(
            "PATCH", "/api/v1/users/me", {"avatar": avatar}, token=player.access
        )
        assert status == 200, body
    process = server_processes[node.base_url]
    async with AsyncExitStack() as stack:
        reader = await Listener.open(cluster, stack, node, players[0])
        stuck = await asyncio.to_thread(stuck_client, node, node.ticket(players[1]))
        stack.callback(stuck.close)
        assert await asyncio.to_thread(live_connections, node) == 2
        before = rss_kib(process)
        load = SteadyLoad(cluster, players, nodes=(node,), clients=4, allowed=(), pause_seconds=0)
        started = time.monotonic()
        while await asyncio.to_thread(live_connections, node) > 1:
            assert time.monotonic() - started < LET_GO_SECONDS, "the stuck client was never let go"
            await asyncio.sleep(0.5)
        let_go = time.monotonic() - started
        await asyncio.sleep(2)  # the load goes on past it
        outcomes = await asyncio.to_thread(load.stop)
        grown = rss_kib(process) - before
        score = await scored(cluster, node, players[0], outcomes)
        await reader.hears(cluster, stack, score, resync=False)
        assert not reader.socket.reader.done()  # the reading client was served throughout

    assert outcomes.unexpected == []
    updates = [frame for frame in reader.socket.frames if frame.event == "leaderboard.update"]
    assert len(updates) > 20
    assert grown < 32 * 1024, f"the node grew by {grown} KiB"
    checked = assert_ledger_holds(cluster, outcomes)
    reliability_report.add(
        Row.of(
            "a client that never reads",
            f"a subscribed socket with a 4 KiB receive buffer that never reads, "
            f"{len(updates)} board updates; let go after {let_go:.1f} s, node RSS "
            f"{grown / 1024:+.1f} MiB",
            outcomes,
            checked,
        )
    )
