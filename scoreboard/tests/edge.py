"""nginx in front of both kinds of node, as docker/compose.yaml deploys them: what the load
balancer's tests (scoreboard/tests/test_nginx.py) and the reliability suite's node faults
start. Loaded by the root conftest, like realtime/tests/cluster.py.

Debian's nginx runs docker/nginx/scoreboard.conf itself. Around it, `make_edge` writes what a
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from conftest import _missing_service, stop_process
from realtime.tests.cluster import NODE_SETTINGS, WAIT_SECONDS, Cluster, Node, Template
from scoreboard.tests.served import ROOT, manage

T = TypeVar("T")

NGINX_DIR = ROOT / "docker" / "nginx"
# The compose service names in docker/nginx/'s node lists, replaced by the nodes' addresses.
COMPOSE_NODES = {
    "upstream-api.conf": ("api1:8000", "api2:8000"),
    "upstream-live.conf": ("live1:8001", "live2:8001"),
}


def send(
    base_url: str,
    method: str,
    path: str,
    body: bytes | None = None,
    *,
    headers: dict[str, str] | None = None,
    source: str = "127.0.0.1",
    timeout: float = 10,
) -> tuple[int, dict[str, str], bytes]:
    """One HTTP request from the loopback address `source`: status, headers, body."""
    address = urllib.parse.urlsplit(base_url)
    connection = http.client.HTTPConnection(
        address.hostname or "", address.port, timeout=timeout, source_address=(source, 0)
    )
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


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
def make_edge(
    nginx_binary: str,
    cluster_services: dict[str, str],
    cluster_template: Template,
    start_server: Callable[..., str],
    server_processes: dict[str, subprocess.Popen[bytes]],
    tmp_path: Path,
) -> Iterator[Callable[..., Edge]]:
    """Start nginx on a free loopback port in front of two API nodes and two live nodes, which
    run with NODE_SETTINGS, the cluster's services and `overrides`; nginx is stopped by its
    PID afterwards."""
    started: list[subprocess.Popen[bytes]] = []

    def make(**overrides: str) -> Edge:
        env = {**NODE_SETTINGS, **cluster_services, **overrides}
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
        started.append(process)
        cluster = Cluster(*live, cluster_template.key_id, cluster_template.secret, env=env)
        nginx = Node("nginx", f"http://127.0.0.1:{port}", error_log)
        site = Edge(
            nginx, api, live, cluster, folder / "access.log", env["DATABASE_URL"], server_processes
        )

        def serving() -> bool | None:
            if process.poll() is not None:
                output = (folder / "output.log").read_text(errors="replace")
                pytest.fail(f"nginx exited during start-up:\n{output}\n{site.logs()}")
            try:
                return send(nginx.base_url, "GET", "/healthz")[0] == 200 or None
            except OSError:
                return None

        site.wait_for(serving, "answer from nginx")
        return site

    yield make
    for process in started:
        stop_process(process)
