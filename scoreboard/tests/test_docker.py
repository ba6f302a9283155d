"""The container setup (docker/): the compose file's structure, its .env example, the servers of
the two kinds of node, the image's entry point and health check.

There is no Docker engine where the tests run, so nothing is built or started: these tests
read the files and check what `docker compose up` relies on. nginx's own configuration runs
for real in test_nginx.py.
"""

from __future__ import annotations

import http.server
import ipaddress
import json
import os
import re
import runpy
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from gunicorn.config import Config

from scoreboard.tests.served import ROOT

DOCKER = ROOT / "docker"
API_NODES = {"api1", "api2"}
LIVE_NODES = {"live1", "live2"}
APP_NODES = API_NODES | LIVE_NODES
IMAGE_SERVICES = APP_NODES | {"migrate", "reconcile"}
API_PORT, LIVE_PORT = 8000, 8001
# Where the servers listen inside their containers (only nginx publishes a port).
ALL_INTERFACES = "0.0.0.0"  # noqa: S104
COMPLETED = {"condition": "service_completed_successfully"}
HEALTHY = {"condition": "service_healthy"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    return loaded


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose["services"]
    return found


def env_example() -> dict[str, str]:
    lines = (DOCKER / "env.example").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line.strip() and not line.startswith("#"))


def uvicorn_flags() -> str:
    """The flags of `make serve` (Makefile, UVICORN_FLAGS)."""
    makefile = (ROOT / "Makefile").read_text()
    flags = re.search(r"^UVICORN_FLAGS \?= (.+)$", makefile, flags=re.MULTILINE)
    assert flags
    return flags[1].strip()


def gunicorn_config() -> Config:
    """docker/gunicorn.conf.py as gunicorn reads it: every setting it names, validated."""
    namespace = runpy.run_path(str(DOCKER / "gunicorn.conf.py"))
    config = Config()
    # gunicorn ignores names it does not know, so a misspelt setting would pass unnoticed.
    imported = {"os", "settings", "env_int", "glogging"}
    unknown = [
        name
        for name in namespace
        if not name.startswith("_") and name not in imported and name not in config.settings
    ]
    assert unknown == []
    for name, value in namespace.items():
        if name in config.settings:
            config.set(name, value)
    return config


def test_the_compose_file_runs_the_documented_services(services: dict[str, Any]) -> None:
    assert set(services) == IMAGE_SERVICES | {"postgres", "redis", "nginx", "prometheus"}
    # Every container of the image is the same build, with the same .env.
    builds = {json.dumps(services[name]["build"], sort_keys=True) for name in IMAGE_SERVICES}
    assert builds == {json.dumps({"context": "..", "dockerfile": "docker/Dockerfile"})}
    assert {services[name]["env_file"] for name in IMAGE_SERVICES} == {".env"}
    assert services["prometheus"]["profiles"] == ["monitoring"]
    # Only nginx publishes a port to everyone (Prometheus' is on the host's loopback).
    published = {name: s["ports"] for name, s in services.items() if "ports" in s}
    assert published == {"nginx": ["8080:80"], "prometheus": ["127.0.0.1:9090:9090"]}


def test_the_data_services_keep_their_data_and_report_health(
    compose: dict[str, Any], services: dict[str, Any]
) -> None:
    postgres, redis = services["postgres"], services["redis"]
    assert postgres["volumes"] == ["postgres-data:/var/lib/postgresql/data"]
    assert redis["volumes"] == ["redis-data:/data"]
    assert set(compose["volumes"]) == {"postgres-data", "redis-data"}
    assert redis["command"] == [
        "redis-server",
        "--appendonly",
        "yes",
        "--maxmemory-policy",
        "noeviction",
    ]
    assert postgres["healthcheck"]["test"][:2] == ["CMD", "pg_isready"]
    assert redis["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]


def test_nodes_start_after_the_migrate_job_on_healthy_services(services: dict[str, Any]) -> None:
    migrate = services["migrate"]
    assert migrate["restart"] == "no"
    assert migrate["depends_on"] == {"postgres": HEALTHY}
    assert "manage.py migrate --noinput && python manage.py load_actions" in migrate["command"][-1]
    for name in APP_NODES | {"reconcile"}:
        assert services[name]["depends_on"] == {
            "postgres": HEALTHY,
            "redis": HEALTHY,
            "migrate": COMPLETED,
        }, name
    # One-off and background commands have no HTTP server for the image's health check.
    for name in ("migrate", "reconcile"):
        assert services[name]["healthcheck"] == {"disable": True}
    # The nodes run the image's health check, each on its server's port (the image's own
    # command and the API nodes listen on the default, 8000).
    dockerfile = (DOCKER / "Dockerfile").read_text()
    assert 'CMD ["python", "/app/docker/healthcheck.py"]' in dockerfile
    for name in API_NODES:
        assert "healthcheck" not in services[name]
    for name in LIVE_NODES:
        assert services[name]["healthcheck"] == {
            "test": ["CMD", "python", "/app/docker/healthcheck.py", str(LIVE_PORT)]
        }


def test_api_nodes_run_gunicorn_sync_workers_on_the_wsgi_app(
    services: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in API_NODES:
        assert services[name]["command"] == ["gunicorn", "--config", "docker/gunicorn.conf.py"]
        # Its workers' metrics are merged at each scrape (the entry point empties the folder).
        assert services[name]["environment"] == {"PROMETHEUS_MULTIPROC_DIR": "/tmp/prometheus"}  # noqa: S108
        assert services[name]["hostname"] == name

    monkeypatch.delenv("GUNICORN_WORKERS", raising=False)
    config = gunicorn_config()
    assert config.wsgi_app == "scoreboard.wsgi:application"
    assert config.bind == [f"{ALL_INTERFACES}:{API_PORT}"]
    assert config.worker_class_str == "sync"
    assert config.workers == 2 * len(os.sched_getaffinity(0))
    # A worker is replaced once nginx has given up on its request (proxy_read_timeout 30s),
    # and stops within `docker stop`'s 10 s.
    assert config.timeout == 30
    assert config.graceful_timeout < 10
    # No proxy header is believed by gunicorn itself: the app decides (docs/api.md).
    assert config.forwarded_allow_ips == []
    assert config.control_socket_disable
    # The app logs each request; gunicorn builds no access line of its own to throw away.
    logger = config.logger_class(config)
    monkeypatch.setattr(logger, "atoms", lambda *args: pytest.fail("access line built"))
    assert logger.access(None, None, {}, None) is None

    monkeypatch.setenv("GUNICORN_WORKERS", "3")
    assert gunicorn_config().workers == 3


def test_live_nodes_run_uvicorn_with_the_flags_of_make_serve(services: dict[str, Any]) -> None:
    for name in LIVE_NODES:
        command = services[name]["command"]
        assert command[:2] == ["uvicorn", "scoreboard.asgi:application"]
        assert command[2:6] == ["--host", ALL_INTERFACES, "--port", str(LIVE_PORT)]
        assert " ".join(command[6:]) == uvicorn_flags()
        assert services[name]["hostname"] == name
        # One process: no metrics of several workers to merge.
        assert "environment" not in services[name]


def test_the_reconcile_service_runs_the_commands_loop(services: dict[str, Any]) -> None:
    from leaderboard.management.commands.reconcile_leaderboards import Command

    command = services["reconcile"]["command"]
    assert command[:3] == ["python", "manage.py", "reconcile_leaderboards"]
    options = Command().create_parser("manage.py", "reconcile_leaderboards").parse_args(command[3:])
    assert options.interval == 60
    assert (options.metrics_port, options.metrics_address) == (9100, "0.0.0.0")  # noqa: S104


def test_nginx_balances_over_every_node_and_is_the_trusted_proxy(
    compose: dict[str, Any], services: dict[str, Any]
) -> None:
    nginx = services["nginx"]
    assert nginx["depends_on"] == dict.fromkeys(APP_NODES, HEALTHY)
    for kind, nodes, port in (("api", API_NODES, API_PORT), ("live", LIVE_NODES, LIVE_PORT)):
        upstreams = (DOCKER / "nginx" / f"upstream-{kind}.conf").read_text()
        listed = re.findall(r"^server (\S+)", upstreams, flags=re.MULTILINE)
        assert sorted(listed) == sorted(f"{name}:{port}" for name in nodes)
    # The live channels go to the live nodes, everything else to the API nodes.
    routes = dict(
        re.findall(
            r"^    location ([^@{]+?) \{\n        proxy_pass http://(\w+);",
            (DOCKER / "nginx" / "scoreboard.conf").read_text(),
            flags=re.MULTILINE,
        )
    )
    assert routes == {
        "/": "scoreboard_api",
        "/ws/": "scoreboard_live",
        "= /api/v1/leaderboard/stream": "scoreboard_live",
    }
    listen = (DOCKER / "nginx" / "listen.conf").read_text()
    assert re.findall(r"^listen (\d+);", listen, flags=re.MULTILINE) == ["80"]
    # The nodes believe X-Forwarded-For from nginx's fixed address, and from nothing else.
    address = nginx["networks"]["backend"]["ipv4_address"]
    subnet = compose["networks"]["backend"]["ipam"]["config"][0]["subnet"]
    assert ipaddress.ip_address(address) in ipaddress.ip_network(subnet)
    assert env_example()["SCOREBOARD_TRUSTED_PROXIES"] == address


def test_every_mounted_file_is_in_the_repository(services: dict[str, Any]) -> None:
    secrets_made_by_the_operator = {"./metrics-token"}
    sources = [
        volume.split(":")[0]
        for service in services.values()
        for volume in service.get("volumes", [])
        if volume.startswith("./")
    ]
    assert sources
    missing = [
        s for s in sources if s not in secrets_made_by_the_operator and not (DOCKER / s).exists()
    ]
    assert missing == []
    ignored = (ROOT / ".gitignore").read_text().splitlines()
    assert {f"docker/{s.removeprefix('./')}" for s in secrets_made_by_the_operator} <= set(ignored)


def test_the_env_example_names_only_settings_that_exist() -> None:
    documented = set(
        re.findall(r"`([A-Z][A-Z0-9_]+)`", (ROOT / "docs" / "configuration.md").read_text())
    )
    compose_text = (DOCKER / "compose.yaml").read_text()
    names = set(env_example())
    assert {
        "DEBUG",
        "SECRET_KEY",
        "SCOREBOARD_JWT_SIGNING_KEY",
        "SCOREBOARD_ENCRYPTION_KEY",
        "ALLOWED_HOSTS",
        "DATABASE_URL",
        "REDIS_URL",
        "SCOREBOARD_TRUSTED_PROXIES",
    } <= names
    # Each is read by the app (and documented), or used by the compose file itself.
    unknown = [
        name for name in names if name not in documented and f"${{{name}" not in compose_text
    ]
    assert unknown == []
    # The secrets stay empty in the example: with DEBUG=0 the app refuses to start without them.
    secrets = ("SECRET_KEY", "SCOREBOARD_JWT_SIGNING_KEY", "SCOREBOARD_ENCRYPTION_KEY")
    assert [env_example()[name] for name in secrets] == ["", "", ""]
    # The secrets file never reaches an image.
    assert "docker/.env" in (ROOT / ".dockerignore").read_text().splitlines()


def test_the_image_serves_with_the_flags_of_make_serve() -> None:
    dockerfile = (DOCKER / "Dockerfile").read_text()
    cmd = re.search(r"^CMD (\[.*?\])$", dockerfile.replace("\\\n", ""), flags=re.MULTILINE)
    assert cmd
    command = json.loads(cmd[1])
    assert command[:2] == ["uvicorn", "scoreboard.asgi:application"]
    assert command[2:6] == ["--host", ALL_INTERFACES, "--port", str(API_PORT)]
    assert " ".join(command[6:]) == uvicorn_flags()
    assert re.search(rf"^EXPOSE {API_PORT} {LIVE_PORT}$", dockerfile, flags=re.MULTILINE)


@pytest.fixture
def health_server() -> Iterator[tuple[int, list[str]]]:
    """An HTTP server on a free loopback port that answers /healthz with 200; yields its port
    and the Host headers it was sent."""
    hosts: list[str] = []

    class Healthz(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hosts.append(self.headers["Host"])
            self.send_response(200 if self.path == "/healthz" else 404)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Healthz)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], hosts
    finally:
        server.shutdown()
        server.server_close()


def run_healthcheck(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603
        [sys.executable, str(DOCKER / "healthcheck.py"), *args],
        env={"PATH": os.environ["PATH"], "ALLOWED_HOSTS": "scores.example.com,api1"},
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )


def test_the_health_check_asks_the_port_it_is_given(health_server: tuple[int, list[str]]) -> None:
    port, hosts = health_server

    assert run_healthcheck(str(port)).returncode == 0
    # With the first allowed host as Host, which Django accepts.
    assert hosts == ["scores.example.com"]

    # Nothing listening: unhealthy.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    result = run_healthcheck(str(closed_port))
    assert result.returncode == 1
    assert result.stderr.startswith("unhealthy:")


def test_the_entrypoint_empties_the_metrics_directory_then_becomes_the_command(
    tmp_path: Path,
) -> None:
    metrics_dir = tmp_path / "prometheus"
    (metrics_dir / "old").mkdir(parents=True)
    (metrics_dir / "counter_1234.db").write_bytes(b"left by the previous run")
    (metrics_dir / "old" / "gauge_5678.db").write_bytes(b"")

    result = subprocess.run(  # noqa: S603
        ["/bin/sh", str(DOCKER / "entrypoint.sh"), "sh", "-c", 'ls -A "$0"; exit 3', metrics_dir],
        env={"PATH": "/usr/bin:/bin", "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)},
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )

    assert (result.returncode, result.stdout, result.stderr) == (3, "", "")
    assert metrics_dir.is_dir()
