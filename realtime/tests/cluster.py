"""Two app nodes on one PostgreSQL database and one Redis, and clients for them: what the
cluster tests (realtime/tests/test_cluster.py) and the load balancer's (scoreboard/tests/
test_nginx.py) start. Loaded by the root conftest, like scoreboard/tests/served.py.

Two uvicorn processes (the root conftest's `start_server`) on different loopback ports share
one PostgreSQL database and one Redis, as two machines behind a load balancer would. They run
on PostgreSQL and Redis in both CI passes, whatever the test run itself uses: every test gets a
fresh database (a copy of one migrated once per session) and a Redis key prefix of its own in
Redis database 14 (SCOREBOARD_TEST_CLUSTER_REDIS_DB to pick another; CI flushes the test
database, 15, between tests). Without PostgreSQL or Redis the tests skip, and fail under
CI=true.

Everything the nodes know is made through their own HTTP API and management commands; the test
process's database is never used.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import secrets
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
from websockets.asyncio.client import ClientConnection, connect

from conftest import TEST_PASSWORD, _missing_service
from scoreboard.tests.served import manage
from scoring.anticheat import hmac_sha256_hex
from scoring.tests.fixtures import now_iso

T = TypeVar("T")

CHANNEL = "leaderboard.top10"
INTERVAL_MS = 500
# The longest any one thing may take to show up (a broadcast waits for at most one interval).
WAIT_SECONDS = 15.0
DEFAULT_POSTGRES_URL = "postgres://postgres@127.0.0.1:5432/postgres"
# Not the test database (flushed between tests); every test has a key prefix of its own in it.
CLUSTER_REDIS_DB = int(os.environ.get("SCOREBOARD_TEST_CLUSTER_REDIS_DB", "14"))
# Both nodes and the management commands run with these, so they share keys and secrets.
NODE_SETTINGS = {
    "DJANGO_SETTINGS_MODULE": "scoreboard.settings",
    "DEBUG": "0",
    "ALLOWED_HOSTS": "127.0.0.1,localhost",
    "SECRET_KEY": "cluster-secret-" + "s" * 40,
    "SCOREBOARD_JWT_SIGNING_KEY": "cluster-jwt-" + "j" * 40,
    "SCOREBOARD_ENCRYPTION_KEY": "cluster-encryption-" + "e" * 40,
    "SCOREBOARD_BROADCAST_INTERVAL_MS": str(INTERVAL_MS),
    # The burst must not be rate limited.
    "SCOREBOARD_RATE_API_PER_IP": "10000/min",
    "SCOREBOARD_RATE_SCORE_UPDATES": "10000/min",
    "SCOREBOARD_AUTH_RATE": "1000/min",
}
# Loopback only: never through a proxy named by the environment.
HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


# ---- services: a PostgreSQL database and a Redis key space per test ---------------------


def postgres_admin_url() -> str:
    """The maintenance database of the PostgreSQL server this run uses (or the local one)."""
    configured = os.environ.get("DATABASE_URL", "").strip()
    if not configured.startswith(("postgres://", "postgresql://")):
        return DEFAULT_POSTGRES_URL
    return urllib.parse.urlunsplit(urllib.parse.urlsplit(configured)._replace(path="/postgres"))


def database_url(admin_url: str, name: str) -> str:
    return urllib.parse.urlunsplit(urllib.parse.urlsplit(admin_url)._replace(path=f"/{name}"))


def run_sql(admin_url: str, statement: Any, *, attempts: int = 1) -> None:
    """Run one statement on the maintenance database. `attempts` > 1 retries while another
    session still uses a database being copied or dropped (a command's connections close a
    moment after the command exits)."""
    import psycopg

    for attempt in range(attempts):
        try:
            with psycopg.connect(admin_url, autocommit=True, connect_timeout=3) as admin:
                admin.execute(statement)
            return
        except psycopg.errors.ObjectInUse:
            if attempt == attempts - 1:
                raise
            time.sleep(0.2)


@dataclass(frozen=True)
class Template:
    """A migrated database with the action catalog and one game server, copied per test."""

    admin_url: str
    name: str
    key_id: str
    secret: str


@pytest.fixture(scope="session")
def cluster_redis_url(redis_url: str) -> str:
    """The Redis of this run (skipped or failed when unreachable), database CLUSTER_REDIS_DB."""
    return urllib.parse.urlunsplit(
        urllib.parse.urlsplit(redis_url)._replace(path=f"/{CLUSTER_REDIS_DB}")
    )


@pytest.fixture(scope="session")
def cluster_template() -> Iterator[Template]:
    import psycopg
    from psycopg import sql

    admin_url = postgres_admin_url()
    name = f"scoreboard_cluster_{os.getpid()}_template"
    try:
        run_sql(
            admin_url,
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)),
        )
        run_sql(admin_url, sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    except psycopg.OperationalError as error:
        _missing_service(f"PostgreSQL at {admin_url} is unreachable: {error}")
    try:
        env = {**NODE_SETTINGS, "DATABASE_URL": database_url(admin_url, name)}
        manage(env, "migrate", "--noinput")
        manage(env, "load_actions")
        game_server = json.loads(manage(env, "create_game_server", "arena-cluster"))
        yield Template(admin_url, name, game_server["keyId"], game_server["secret"])
    finally:
        run_sql(
            admin_url,
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)),
            attempts=25,
        )


_copies = itertools.count(1)


@pytest.fixture
def cluster_services(
    cluster_redis_url: str, cluster_template: Template
) -> Iterator[dict[str, str]]:
    """DATABASE_URL, REDIS_URL and REDIS_KEY_PREFIX of a fresh cluster; the database and the
    keys are removed afterwards (after the nodes stop: ask for this fixture before
    `start_server`)."""
    import redis
    from psycopg import sql

    name = f"scoreboard_cluster_{os.getpid()}_{next(_copies)}"
    prefix = f"cluster-{secrets.token_hex(4)}"
    drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
    run_sql(cluster_template.admin_url, drop)  # left over by a crashed run with the same pid
    run_sql(
        cluster_template.admin_url,
        sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
            sql.Identifier(name), sql.Identifier(cluster_template.name)
        ),
        attempts=25,
    )
    try:
        yield {
            "DATABASE_URL": database_url(cluster_template.admin_url, name),
            "REDIS_URL": cluster_redis_url,
            "REDIS_KEY_PREFIX": prefix,
        }
    finally:
        run_sql(cluster_template.admin_url, drop, attempts=25)
        client = redis.Redis.from_url(cluster_redis_url, socket_connect_timeout=2)
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)


# ---- the nodes and their clients ---------------------------------------------------------


@dataclass(frozen=True)
class Player:
    user_id: str
    username: str
    access: str
    signing_key: str


@dataclass(frozen=True)
class Earned:
    """An action token and the signed score update that spends it."""

    player: Player
    action_id: str
    token: str
    update: dict[str, Any]


@dataclass(frozen=True)
class Node:
    name: str
    base_url: str
    log_path: Path

    @property
    def ws_url(self) -> str:
        return self.base_url.replace("http://", "ws://", 1) + "/ws/leaderboard"

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
        request = urllib.request.Request(  # noqa: S310
            self.base_url + path,
            data=json.dumps(body).encode() if body is not None else None,
            method=method,
            headers={"Content-Type": "application/json", **headers},
        )
        try:
            with HTTP.open(request, timeout=timeout) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    def ticket(self, player: Player) -> str:
        status, body = self.call("POST", "/api/v1/realtime/ticket", token=player.access)
        assert status == 201, body
        return str(body["data"]["ticket"])


@dataclass(frozen=True)
class Received:
    at: float  # time.monotonic() on arrival
    event: str
    data: dict[str, Any]


@dataclass
class LiveClient:
    """What a live connection delivered so far, in order, with arrival times."""

    frames: list[Received] = field(default_factory=list)

    def updates(self) -> list[Received]:
        """The broadcast `leaderboard.update`s (not the subscription snapshots)."""
        return [
            f for f in self.frames if f.event == "leaderboard.update" and not f.data["snapshot"]
        ]

    def snapshot(self) -> Received | None:
        return next((f for f in self.frames if f.data.get("snapshot")), None)

    def update_with_seq(self, seq: int) -> Received | None:
        return next((f for f in self.updates() if f.data["seq"] == seq), None)

    def batch_of(self, update: Received) -> list[Received]:
        """The update and the frames published with it (up to the next update)."""
        start = self.frames.index(update)
        batch = [update]
        for frame in self.frames[start + 1 :]:
            if frame.event == "leaderboard.update":
                break
            batch.append(frame)
        return batch


class LiveSocket(LiveClient):
    def __init__(self, ws: ClientConnection) -> None:
        super().__init__()
        self.ws = ws
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for text in self.ws:
            message = json.loads(text)
            self.frames.append(Received(time.monotonic(), message["event"], message["data"]))

    async def send(self, event: str, data: dict[str, Any]) -> None:
        await self.ws.send(json.dumps({"event": event, "data": data}))


class EventStream(LiveClient):
    """A minimal Server-Sent Events client over one HTTP/1.1 connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        super().__init__()
        self.writer = writer
        self.headers: dict[str, str] = {}
        self.status = 0
        self.error_body = b""
        self.reader = asyncio.create_task(self._read(reader))

    @classmethod
    async def open(cls, node: Node, path: str, *, token: str) -> EventStream:
        address = urllib.parse.urlsplit(node.base_url)
        reader, writer = await asyncio.open_connection(address.hostname, address.port)
        writer.write(
            f"GET {path} HTTP/1.1\r\nHost: {address.netloc}\r\nAuthorization: Bearer {token}"
            "\r\nAccept: text/event-stream\r\nConnection: close\r\n\r\n".encode()
        )
        await writer.drain()
        return cls(reader, writer)

    async def _read(self, reader: asyncio.StreamReader) -> None:
        status = int((await reader.readline()).split()[1])
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            self.headers[name.strip().lower()] = value.strip()
        if status != 200:
            self.error_body = await reader.read()
        self.status = status
        if status != 200:
            return
        buffer = b""
        while chunk := await self._next_chunk(reader):
            buffer += chunk
            while b"\n\n" in buffer:
                block, buffer = buffer.split(b"\n\n", 1)
                self._event(block.decode())

    async def _next_chunk(self, reader: asyncio.StreamReader) -> bytes:
        if self.headers.get("transfer-encoding") != "chunked":
            return await reader.read(65536)
        size = int((await reader.readline()).strip(), 16)
        chunk = await reader.readexactly(size + 2)  # the chunk and its CRLF
        return chunk[:-2]

    def _event(self, block: str) -> None:
        fields: dict[str, list[str]] = {}
        for line in block.split("\n"):
            name, _, value = line.partition(":")
            fields.setdefault(name, []).append(value.removeprefix(" "))
        if "data" in fields:
            event = fields.get("event", ["message"])[0]
            data = json.loads("\n".join(fields["data"]))
            self.frames.append(Received(time.monotonic(), event, data))

    async def close(self) -> None:
        self.reader.cancel()
        self.writer.close()


@dataclass
class Cluster:
    a: Node
    b: Node
    key_id: str
    secret: str
    # What the nodes run with (their services and settings), for management commands.
    env: dict[str, str] = field(default_factory=dict)
    names: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def register(self, node: Node, stem: str, *, country: str = "US") -> Player:
        username = f"{stem}{next(self.names)}"
        status, body = node.call(
            "POST",
            "/api/v1/auth/register",
            {
                "username": username,
                "email": f"{username.lower()}@example.com",
                "password": TEST_PASSWORD,
                "country": country,
            },
        )
        assert status == 201, body
        user_id = body["data"]["id"]
        status, body = node.call(
            "POST", "/api/v1/auth/token", {"username": username, "password": TEST_PASSWORD}
        )
        assert status == 200, body
        return Player(user_id, username, body["data"]["accessToken"], body["data"]["signingKey"])

    def score(self, node: Node, player: Player, action_type: str) -> dict[str, Any]:
        """The README's flow: the game server's proof buys an action token, which the
        player spends on a signed score update. Returns the update's `data`."""
        status, earned = self.earn(node, player, action_type)
        assert isinstance(earned, Earned), earned
        status, body = self.spend(node, earned)
        assert status == 200, body
        return dict(body["data"])

    def earn(self, node: Node, player: Player, action_type: str) -> tuple[int, Earned | Any]:
        """Complete an action with the game server's proof: (201, the token and the signed
        update that spends it), or the status and body of the refusal."""
        action_id, stamp = str(uuid.uuid4()), now_iso()
        proof = hmac_sha256_hex(self.secret, f"{player.user_id}:{action_type}:{action_id}:{stamp}")
        status, body = node.call(
            "POST",
            "/api/v1/actions/complete",
            {
                "actionId": action_id,
                "actionType": action_type,
                "timestamp": stamp,
                "proof": {"keyId": self.key_id, "signature": proof},
            },
            token=player.access,
        )
        if status != 201:
            return status, body
        increment = body["data"]["scoreIncrement"]
        signature = hmac_sha256_hex(
            player.signing_key, f"{player.user_id}{action_id}{stamp}{increment}"
        )
        update = {
            "userId": player.user_id,
            "actionType": action_type,
            "actionId": action_id,
            "scoreIncrement": increment,
            "timestamp": stamp,
            "clientSignature": signature,
        }
        return status, Earned(player, action_id, body["data"]["actionToken"], update)

    def spend(self, node: Node, earned: Earned, **headers: str) -> tuple[int, Any]:
        """Submit the signed score update with its action token."""
        sent: dict[str, Any] = {"X-Action-Token": earned.token, **headers}
        return node.call(
            "POST", "/api/v1/scores/update", earned.update, token=earned.player.access, **sent
        )

    async def socket(self, stack: AsyncExitStack, url: str, **options: Any) -> LiveSocket:
        """A WebSocket to `url`, closed when `stack` is."""
        ws = await stack.enter_async_context(
            connect(url, open_timeout=WAIT_SECONDS, proxy=None, **options)
        )
        socket = LiveSocket(ws)
        stack.push_async_callback(_cancel, socket.reader)
        return socket

    async def subscribed(self, socket: LiveClient) -> Received:
        """The snapshot a new subscription starts with."""
        if isinstance(socket, LiveSocket):
            await socket.send("subscribe", {"channel": CHANNEL})
        return await self.eventually(socket.snapshot, "the subscription's snapshot")

    async def eventually(self, check: Callable[[], T | None], what: str) -> T:
        """`check()` once it is not None, within WAIT_SECONDS; else fail with the nodes' logs."""
        deadline = time.monotonic() + WAIT_SECONDS
        while (result := check()) is None:
            if time.monotonic() > deadline:
                pytest.fail(f"no {what} within {WAIT_SECONDS} s\n{self.logs()}")
            await asyncio.sleep(0.02)
        return result

    def logs(self) -> str:
        return "\n".join(
            f"---- node {node.name} ({node.base_url}), last lines ----\n"
            + "\n".join(node.log_path.read_text(errors="replace").splitlines()[-40:])
            for node in (self.a, self.b)
        )


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def start_nodes(
    start_server: Callable[..., str], env: dict[str, str], log_dir: Path
) -> tuple[Node, Node]:
    """Nodes a and b with `env` (NODE_SETTINGS and a cluster's services, at least), started
    side by side while the Redis board index is built. Each logs to `log_dir`/node-<name>.log."""
    with ThreadPoolExecutor(max_workers=3) as pool:
        index = pool.submit(manage, env, "rebuild_leaderboards")
        urls = [
            pool.submit(start_server, log_path=log_dir / f"node-{name}.log", **env) for name in "ab"
        ]
        index.result()
        nodes = []
        for name, url in zip("ab", urls, strict=True):
            log_path = log_dir / f"node-{name}.log"
            try:
                nodes.append(Node(name, url.result(), log_path))
            except RuntimeError as error:
                pytest.fail(f"node {name}: {error}\n{log_path.read_text(errors='replace')}")
    return nodes[0], nodes[1]


@pytest.fixture
def cluster(
    cluster_services: dict[str, str],
    start_server: Callable[..., str],
    cluster_template: Template,
    tmp_path: Path,
) -> Cluster:
    """Two nodes on one database and one Redis, with the Redis board index built."""
    a, b = start_nodes(start_server, {**NODE_SETTINGS, **cluster_services}, tmp_path)
    return Cluster(a, b, cluster_template.key_id, cluster_template.secret)
