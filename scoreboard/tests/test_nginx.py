"""nginx in front of both kinds of node: the committed load balancer (docker/nginx/) at work.

Debian's nginx runs docker/nginx/scoreboard.conf itself. Around it, this test writes what a
deployment provides: a top-level nginx.conf (pid, logs and temporary files under tmp_path,
listening on a free loopback port) and the lists of nodes, which are docker/nginx/upstream-api.conf
and upstream-live.conf with the compose service names replaced by loopback addresses. Behind it
run two API nodes, the WSGI app under gunicorn with docker/gunicorn.conf.py, and two live nodes,
the ASGI app under uvicorn, as in docker/compose.yaml, on the cluster tests' services
(realtime/tests/cluster.py): one PostgreSQL database and one Redis, in both CI passes. Without
nginx the tests skip, and fail under CI=true (`make test` installs it).

Which node answered a request comes from nginx's access log (JSON lines with the upstream's
address and the request id).
"""

from __future__ import annotations

import asyncio
import getpass
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.parse
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import pytest

from conftest import _missing_service, stop_process
from realtime.tests.cluster import (
    CHANNEL,
    NODE_SETTINGS,
    WAIT_SECONDS,
    Cluster,
    EventStream,
    Node,
    Template,
)
from scoreboard.tests.metric_samples import parse_scrape, sample
from scoreboard.tests.served import ROOT, manage

pytestmark = [pytest.mark.redis, pytest.mark.timeout(120)]

T = TypeVar("T")

NGINX_DIR = ROOT / "docker" / "nginx"
# The compose service names in docker/nginx/'s node lists, replaced by the nodes' addresses.
COMPOSE_NODES = {
    "upstream-api.conf": ("api1:8000", "api2:8000"),
    "upstream-live.conf": ("live1:8001", "live2:8001"),
}
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
    api: tuple[Node, Node]  # gunicorn
    live: tuple[Node, Node]  # uvicorn
    cluster: Cluster  # the clients' flows (its nodes a and b are the live nodes)
    access_log: Path
    database_url: str
    processes: dict[str, subprocess.Popen[bytes]]  # of the nodes, by base URL

    def address(self, node: Node) -> str:
        """How nginx names `node` in its log."""
        return urllib.parse.urlsplit(node.base_url).netloc

    def addresses(self, nodes: tuple[Node, Node]) -> set[str]:
        return {self.address(node) for node in nodes}

    def log_entries(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.access_log.read_text().splitlines()]

    def log_entry(self, request_id: str) -> dict[str, Any]:
        """The access log's line for the request with this X-Request-ID, once written."""

        def entry() -> dict[str, Any] | None:
            return next((e for e in self.log_entries() if e["request_id"] == request_id), None)

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
        """Kill the node without a word: gunicorn with its workers (its process group)."""
        process = self.processes[node.base_url]
        if os.getpgid(process.pid) == process.pid:
            os.killpg(process.pid, signal.SIGKILL)
        else:
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
        tails = [
            f"---- {node.name} ({node.base_url}), last lines ----\n"
            + "\n".join(node.log_path.read_text(errors="replace").splitlines()[-40:])
            for node in (*self.api, *self.live, self.nginx)
        ]
        return "\n".join(tails)


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


def nginx_config(folder: Path, nodes: dict[str, tuple[Node, Node]]) -> tuple[Path, int]:
    """The top-level nginx.conf around the committed scoreboard.conf, and its port. `nodes`
    replace the compose services of each node list (file name) of docker/nginx/."""
    (folder / "scoreboard").mkdir(parents=True)
    for name, services in COMPOSE_NODES.items():
        upstreams = (NGINX_DIR / name).read_text()
        for service, node in zip(services, nodes[name], strict=True):
            assert service in upstreams, f"docker/nginx/{name} no longer names {service}"
            upstreams = upstreams.replace(service, urllib.parse.urlsplit(node.base_url).netloc)
        (folder / "scoreboard" / name).write_text(upstreams)
    port = free_port()
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


def start_edge_nodes(
    start_server: Callable[..., str], env: dict[str, str], log_dir: Path
) -> tuple[tuple[Node, Node], tuple[Node, Node]]:
    """API nodes api-a and api-b (gunicorn, each with a metrics directory of its own for its
    workers, as compose gives each container) and live nodes live-a and live-b (uvicorn),
    started side by side while the Redis board index is built. Each logs to
    `log_dir`/<name>.log."""
    names = ("api-a", "api-b", "live-a", "live-b")
    with ThreadPoolExecutor(max_workers=len(names) + 1) as pool:
        index = pool.submit(manage, env, "rebuild_leaderboards")
        started = {}
        for name in names:
            wsgi = name.startswith("api")
            node_env = dict(env)
            if wsgi:
                metrics_dir = log_dir / f"{name}-metrics"
                metrics_dir.mkdir()
                node_env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
            log_path = log_dir / f"{name}.log"
            started[name] = pool.submit(start_server, log_path=log_path, wsgi=wsgi, **node_env)
        index.result()
        nodes = []
        for name, url in started.items():
            log_path = log_dir / f"{name}.log"
            try:
                nodes.append(Node(name, url.result(), log_path))
            except RuntimeError as error:
                pytest.fail(f"node {name}: {error}\n{log_path.read_text(errors='replace')}")
    return (nodes[0], nodes[1]), (nodes[2], nodes[3])


@pytest.fixture
def edge(
    nginx_binary: str,
    cluster_services: dict[str, str],
    cluster_template: Template,
    start_server: Callable[..., str],
    server_processes: dict[str, subprocess.Popen[bytes]],
    tmp_path: Path,
) -> Iterator[Edge]:
    """nginx on a free loopback port in front of two API nodes and two live nodes; stopped by
    its PID afterwards."""
    env = {
        **NODE_SETTINGS,
        **cluster_services,
        "SCOREBOARD_TRUSTED_PROXIES": TRUSTED_PROXIES,
        "SCOREBOARD_METRICS_TOKEN": METRICS_TOKEN,
    }
    api, live = start_edge_nodes(start_server, env, tmp_path)
    folder = tmp_path / "nginx"
    config, port = nginx_config(folder, {"upstream-api.conf": api, "upstream-live.conf": live})
    error_log = folder / "error.log"
    with open(folder / "output.log", "ab") as output:
        process = subprocess.Popen(  # noqa: S603
            [nginx_binary, "-c", str(config), "-e", str(error_log)],
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    cluster = Cluster(*live, cluster_template.key_id, cluster_template.secret)
    nginx = Node("nginx", f"http://127.0.0.1:{port}", error_log)
    site = Edge(
        nginx, api, live, cluster, folder / "access.log", env["DATABASE_URL"], server_processes
    )
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
        stop_process(process)


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
