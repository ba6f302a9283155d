"""nginx in front of two app nodes: the committed load balancer (docker/nginx/) at work.

Debian's nginx runs docker/nginx/scoreboard.conf itself. Around it, this test writes what a
deployment provides: a top-level nginx.conf (pid, logs and temporary files under tmp_path,
listening on a free loopback port) and the list of nodes, which is docker/nginx/upstream.conf
with the compose service names replaced by the two nodes' loopback addresses. The nodes are the
cluster tests' (realtime/tests/cluster.py): one PostgreSQL database and one Redis, in both CI
passes. Without nginx the tests skip, and fail under CI=true (`make test` installs it).

Which node answered a request comes from nginx's access log (JSON lines with the upstream's
address and the request id).
"""

from __future__ import annotations

import asyncio
import getpass
import http.client
import json
import shutil
import socket
import subprocess
import time
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import pytest

from conftest import _missing_service
from realtime.tests.cluster import (
    CHANNEL,
    NODE_SETTINGS,
    WAIT_SECONDS,
    Cluster,
    EventStream,
    Node,
    Template,
    start_nodes,
)
from scoreboard.tests.served import ROOT

pytestmark = [pytest.mark.redis, pytest.mark.timeout(120)]

T = TypeVar("T")

NGINX_DIR = ROOT / "docker" / "nginx"
# The compose service names in docker/nginx/upstream.conf, replaced by the nodes' addresses.
COMPOSE_NODES = ("app1:8000", "app2:8000")
BODY_LIMIT = 64 * 1024
# A client on another loopback address than nginx's, which claims to forward for someone else.
CLIENT_ADDRESS = "127.0.0.2"
FORGED_CLIENT = "203.0.113.9"
# The nodes trust the whole loopback network as proxies, the client's address included. Were
# nginx to append to the client's X-Forwarded-For, the forged hop would then be believed; only
# a header that nginx replaced yields the client's real address.
TRUSTED_PROXIES = "127.0.0.0/8"


# ---- nginx and the nodes behind it -------------------------------------------------------


def send(
    base_url: str,
    method: str,
    path: str,
    body: bytes | None = None,
    *,
    headers: dict[str, str] | None = None,
    source: str = "127.0.0.1",
) -> tuple[int, dict[str, str], bytes]:
    """One HTTP request from the loopback address `source`: status, headers, body."""
    address = urllib.parse.urlsplit(base_url)
    connection = http.client.HTTPConnection(
        address.hostname or "", address.port, timeout=10, source_address=(source, 0)
    )
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


@dataclass(frozen=True)
class ForgingClient(Node):
    """Calls nginx from CLIENT_ADDRESS, always with `X-Forwarded-For: FORGED_CLIENT`."""

    def call(
        self, method: str, path: str, body: Any = None, *, token: str = "", **headers: str
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
        )
        return status, json.loads(payload)


@dataclass
class Edge:
    nginx: Node  # called like a node
    cluster: Cluster  # the nodes behind it (a, b) and the clients' flows
    access_log: Path
    database_url: str
    processes: dict[str, subprocess.Popen[bytes]]  # of the nodes, by base URL

    def address(self, node: Node) -> str:
        """How nginx names `node` in its log."""
        return urllib.parse.urlsplit(node.base_url).netloc

    def log_entry(self, request_id: str) -> dict[str, Any]:
        """The access log's line for the request with this X-Request-ID, once written."""

        def entry() -> dict[str, Any] | None:
            lines = self.access_log.read_text().splitlines()
            entries = [json.loads(line) for line in lines]
            return next((e for e in entries if e["request_id"] == request_id), None)

        return self.wait_for(entry, f"an access log line for {request_id}")

    def answered_by(self, request_id: str) -> str:
        """The node that answered (after any that failed first)."""
        return str(self.log_entry(request_id)["upstream"]).split(", ")[-1]

    def get(self, path: str, request_id: str, **headers: str) -> tuple[int, dict[str, Any]]:
        status, _, body = send(
            self.nginx.base_url, "GET", path, headers={"X-Request-ID": request_id, **headers}
        )
        return status, json.loads(body)

    def kill(self, node: Node) -> None:
        process = self.processes[node.base_url]
        process.kill()
        process.wait(timeout=10)

    def wait_for(self, check: Callable[[], T | None], what: str) -> T:
        deadline = time.monotonic() + WAIT_SECONDS
        while (result := check()) is None:
            if time.monotonic() > deadline:
                pytest.fail(f"no {what} within {WAIT_SECONDS} s\n{self.logs()}")
            time.sleep(0.05)
        return result

    def logs(self) -> str:
        error_log = Path(self.nginx.log_path).read_text(errors="replace").splitlines()[-40:]
        return self.cluster.logs() + "\n---- nginx error log ----\n" + "\n".join(error_log)


@pytest.fixture(scope="session")
def nginx_binary() -> str:
    binary = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin")
    if not binary:
        _missing_service("nginx is not installed (`make test` installs Debian's nginx)")
    return str(binary)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def nginx_config(folder: Path, nodes: list[str]) -> tuple[Path, int]:
    """The top-level nginx.conf around the committed scoreboard.conf, and its port."""
    upstreams = (NGINX_DIR / "upstream.conf").read_text()
    for service, address in zip(COMPOSE_NODES, nodes, strict=True):
        assert service in upstreams, f"docker/nginx/upstream.conf no longer names {service}"
        upstreams = upstreams.replace(service, address)
    port = free_port()
    (folder / "scoreboard").mkdir(parents=True)
    (folder / "scoreboard" / "upstream.conf").write_text(upstreams)
    (folder / "scoreboard" / "listen.conf").write_text(f"listen 127.0.0.1:{port};\n")
    temp_paths = "\n".join(
        f"    {kind}_temp_path {folder / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    config = folder / "nginx.conf"
    # Two workers, so that the upstream's shared zone (connection counts, failed nodes) counts.
    # `user` keeps the workers able to write under tmp_path when the tests run as root (nginx
    # ignores it otherwise).
    config.write_text(
        f"""daemon off;
user {getpass.getuser()};
worker_processes 2;
pid {folder / "nginx.pid"};
error_log {folder / "error.log"} notice;
events {{
    worker_connections 256;
}}
http {{
{temp_paths}
    include {NGINX_DIR / "scoreboard.conf"};
    access_log {folder / "access.log"} scoreboard;
}}
"""
    )
    return config, port


@pytest.fixture
def edge(
    nginx_binary: str,
    cluster_services: dict[str, str],
    cluster_template: Template,
    start_server: Callable[..., str],
    server_processes: dict[str, subprocess.Popen[bytes]],
    tmp_path: Path,
) -> Iterator[Edge]:
    """nginx on a free loopback port in front of two nodes; stopped by its PID afterwards."""
    env = {**NODE_SETTINGS, **cluster_services, "SCOREBOARD_TRUSTED_PROXIES": TRUSTED_PROXIES}
    a, b = start_nodes(start_server, env, tmp_path)
    folder = tmp_path / "nginx"
    config, port = nginx_config(folder, [urllib.parse.urlsplit(n.base_url).netloc for n in (a, b)])
    error_log = folder / "error.log"
    with open(folder / "output.log", "ab") as output:
        process = subprocess.Popen(  # noqa: S603
            [nginx_binary, "-c", str(config), "-e", str(error_log)],
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    cluster = Cluster(a, b, cluster_template.key_id, cluster_template.secret)
    nginx = Node("nginx", f"http://127.0.0.1:{port}", error_log)
    site = Edge(nginx, cluster, folder / "access.log", env["DATABASE_URL"], server_processes)
    try:

        def serving() -> bool | None:
            if process.poll() is not None:
                output = (folder / "output.log").read_text(errors="replace")
                pytest.fail(f"nginx exited during start-up:\n{output}\n{site.logs()}")
            try:
                return send(nginx.base_url, "GET", "/healthz")[0] == 200 or None
            except OSError:
                return None

        site.wait_for(serving, "answer from nginx")
        yield site
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# ---- the tests ---------------------------------------------------------------------------


def test_requests_are_spread_over_both_nodes_and_go_around_a_dead_one(edge: Edge) -> None:
    a, b = edge.cluster.a, edge.cluster.b

    # Requests one after another go to both nodes (least_conn on equal counts takes turns).
    for number in range(8):
        assert edge.get("/healthz", f"spread-{number}")[0] == 200
    answered = [edge.answered_by(f"spread-{number}") for number in range(8)]
    assert set(answered) == {edge.address(a), edge.address(b)}, answered

    # When node B dies without a word...
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
        # Two WebSockets through nginx: upgraded, and (least_conn) one on each node.
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

        # When a score is posted through nginx (to either node)...
        await asyncio.to_thread(cluster.score, nginx, scorer, "WIN_GAME")

        # ...both sockets and the stream get the update.
        for client in (first, second, stream):
            update = await cluster.eventually(partial(client.update_with_seq, seq + 1), "update")
            rows = update.data["leaderboard"]
            assert [(r["userId"], r["score"]) for r in rows] == [(scorer.user_id, 100)]

    # Closed, the two sockets are in the access log: one on each node.
    def socket_entries() -> list[dict[str, Any]] | None:
        lines = edge.access_log.read_text().splitlines()
        entries = [e for e in map(json.loads, lines) if e["path"] == "/ws/leaderboard"]
        return entries if len(entries) == 2 else None

    entries = await asyncio.to_thread(edge.wait_for, socket_entries, "two WebSocket log lines")
    assert [e["status"] for e in entries] == [101, 101]
    assert {e["upstream"] for e in entries} == {edge.address(n) for n in (cluster.a, cluster.b)}


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
