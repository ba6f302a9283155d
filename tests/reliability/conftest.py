"""Fixtures of the reliability suite (tests/reliability/README in docs/reliability.md).

Every scenario drives real server processes from outside, as clients and operators would: two
uvicorn nodes on one PostgreSQL database (copied per test) and one Redis, from
realtime/tests/cluster.py. Faults are injected into services the scenario owns: a Redis
server of its own on a free loopback port, never the machine's shared one.

The slow scenarios run with `--slow` (`make reliability-all`); `make reliability` and CI run the
others.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from conftest import _missing_service, stop_process
from realtime.tests.cluster import NODE_SETTINGS, Cluster, Template, start_nodes
from scoreboard.tests.served import manage
from tests.reliability.report import Report

# Load scenarios send thousands of updates per player: the anomaly rules would hold them.
ANOMALY_RULES_OFF = {
    "SCOREBOARD_ANOMALY_FLAG_THRESHOLD": "1000000",
    "SCOREBOARD_ANOMALY_HOLD_THRESHOLD": "1000000",
}
RELIABILITY_SETTINGS = {**NODE_SETTINGS, **ANOMALY_RULES_OFF}
# Every repeat of the action within the window is flagged (counted, for review), none held.
FLAG_EVERY_REPEAT = {
    "SCOREBOARD_ANOMALY_REPEAT_LIMIT": "1",
    "SCOREBOARD_ANOMALY_FLAG_THRESHOLD": "30",
    "SCOREBOARD_ANOMALY_HOLD_THRESHOLD": "1000000",
}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--slow", action="store_true", help="also run the slow reliability scenarios")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--slow"):
        return
    slow = [item for item in items if item.get_closest_marker("slow")]
    if slow:
        config.hook.pytest_deselected(items=slow)
        items[:] = [item for item in items if item.get_closest_marker("slow") is None]


@pytest.fixture(scope="session")
def reliability_report() -> Iterator[Report]:
    report = Report()
    yield report
    report.write()


class RedisServer:
    """A redis-server process of the scenario's own on a free loopback port, to stop and
    start again. Writes its data to disk only when stopped with `save`."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start the server: empty, or with the data of the last `stop(save=True)`."""
        binary = shutil.which("redis-server")
        if binary is None:
            _missing_service("redis-server is not installed")
            return
        self.process = subprocess.Popen(  # noqa: S603
            [
                binary,
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--dir",
                str(self.directory),
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                redis.Redis.from_url(self.url, socket_connect_timeout=0.5).ping()
                return
            except redis.exceptions.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError(f"redis-server on port {self.port} did not start")

    def stop(self, *, save: bool = False) -> None:
        """Stop the server; with `save`, write its data to dump.rdb first, which the next
        start loads."""
        if self.process is None:
            return
        if save:
            redis.Redis.from_url(self.url).save()
        stop_process(self.process)
        self.process = None


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


class PostgresServer:
    """A PostgreSQL server of the scenario's own (initdb in a temporary folder, a free
    loopback port, trust authentication), to stop and start again. As root, its processes run
    as the `postgres` user, since PostgreSQL refuses to run as root."""

    def __init__(self, directory: Path) -> None:
        self.data = directory / "data"
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.bin = _postgres_bin()
        self.data.mkdir(parents=True)
        if os.geteuid() == 0:
            shutil.chown(directory, "postgres")
            shutil.chown(self.data, "postgres")
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8")

    def url(self, database: str = "postgres") -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-l",
            str(self.data.parent / "server.log"),
            "-o",
            f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1 -c fsync=off",
            "-w",
            "start",
        )

    def stop(self) -> None:
        """A fast shutdown: open transactions are rolled back, connections dropped."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def _run(self, program: str, *args: str) -> None:
        command = [str(self.bin / program), *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        result = subprocess.run(  # noqa: S603
            command, capture_output=True, text=True, timeout=120, check=False
        )
        if result.returncode != 0:
            raise RuntimeError(f"{program} failed:\n{result.stdout}\n{result.stderr}")


def _postgres_bin() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if found:
        return found[-1].parent
    initdb = shutil.which("initdb")
    if initdb is None:
        _missing_service("PostgreSQL's server programs (initdb, pg_ctl) are not installed")
    return Path(str(initdb)).parent


@pytest.fixture
def private_postgres() -> Iterator[PostgresServer]:
    # Not under pytest's temporary folders: those are private to this user, and the server
    # runs as `postgres` when the tests run as root.
    directory = Path(tempfile.mkdtemp(prefix="scoreboard-reliability-pg-"))
    try:
        server = PostgresServer(directory)
        server.start()
        try:
            yield server
        finally:
            with contextlib.suppress(RuntimeError):  # already stopped by the scenario
                server.stop()
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def migrated(env: dict[str, str]) -> tuple[str, str]:
    """Migrate the database `env` names and give it the action catalog and a game server;
    that server's key id and secret."""
    manage(env, "migrate", "--noinput")
    manage(env, "load_actions")
    game_server = json.loads(manage(env, "create_game_server", "arena-reliability"))
    return game_server["keyId"], game_server["secret"]


@pytest.fixture
def make_cluster(
    cluster_services: dict[str, str],
    start_server: Callable[..., str],
    cluster_template: Template,
    tmp_path: Path,
) -> Callable[..., Cluster]:
    """Two nodes on a fresh database and Redis key prefix (RELIABILITY_SETTINGS), with
    `overrides` to their environment; `cluster.env` is what they run with."""

    def make(**overrides: str) -> Cluster:
        env = {**RELIABILITY_SETTINGS, **cluster_services, **overrides}
        a, b = start_nodes(start_server, env, tmp_path)
        return Cluster(a, b, cluster_template.key_id, cluster_template.secret, env=env)

    return make
