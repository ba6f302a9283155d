"""Fixtures shared by every app's tests.

Service-backed tests ask for `redis_url` (or run under DATABASE_URL for PostgreSQL). When the
service is unreachable they skip on a developer machine and fail under CI=true, so CI can never
pass by skipping what it was meant to test.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from django.core.cache import cache
from rest_framework.test import APIClient

from scoreboard import ratelimit

pytest_plugins = (
    "scoring.tests.fixtures",
    "scoreboard.tests.served",
    "realtime.tests.cluster",
    "scoreboard.tests.edge",
)

DEFAULT_TEST_REDIS_URL = "redis://127.0.0.1:6379/15"
DEAD_REDIS_URL = "redis://127.0.0.1:1/0"
TEST_PASSWORD = "correct horse battery staple"
UNDER_CI = os.environ.get("CI", "").lower() == "true"


def _missing_service(message: str) -> None:
    if UNDER_CI:
        pytest.fail(f"{message} (CI=true: service-backed tests must run)")
    pytest.skip(message)


@pytest.fixture(scope="session")
def redis_url() -> str:
    """A reachable Redis for tests that need one whatever the configured backends are:
    REDIS_URL, else SCOREBOARD_TEST_REDIS_URL (for test runs side by side), else database 15."""
    url = (
        os.environ.get("REDIS_URL")
        or os.environ.get("SCOREBOARD_TEST_REDIS_URL")
        or DEFAULT_TEST_REDIS_URL
    )
    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except redis.exceptions.RedisError as error:
        _missing_service(f"Redis at {url} is unreachable: {error}")
    return url


@pytest.fixture
def redis_index(settings: Any, redis_url: str) -> Iterator[redis.Redis]:
    """Point the index (and the cache it shares a connection with) at the test Redis."""
    settings.REDIS_URL = redis_url
    settings.CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": redis_url,
            "KEY_PREFIX": settings.REDIS_KEY_PREFIX,
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 2, "SOCKET_TIMEOUT": 2},
        }
    }
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    yield client
    client.flushdb()


@pytest.fixture
def dead_redis(settings: Any) -> None:
    """Redis configured but unreachable: nothing listens on port 1, so connections are
    refused at once (an outage, without mocking the client)."""
    from scoreboard import config

    settings.REDIS_URL = DEAD_REDIS_URL
    settings.CACHES = config.cache_config({"REDIS_URL": DEAD_REDIS_URL})


@pytest.fixture(autouse=True)
def _fresh_cache() -> None:
    """Rate-limit counters and cached values never leak from one test into the next.

    With REDIS_URL the cache's clear() flushes the Redis database, rate-limit keys included.
    """
    cache.clear()
    ratelimit.reset_local_counters()


# Every window a rate can name (a second, a minute, an hour, a day) divides a day.
_LONGEST_WINDOW_SECONDS = 86_400


@pytest.fixture(autouse=True)
def _rate_limit_windows_open_with_the_test(monkeypatch: pytest.MonkeyPatch) -> None:
    """The rate-limit clock runs at real speed but starts each test one second into a fresh
    window, so a test that counts requests against a limit never straddles a window edge
    (a burst across it would find its counters reset). Tests that move time set their own."""
    started = time.time()
    offset = started % _LONGEST_WINDOW_SECONDS - 1
    monkeypatch.setattr(ratelimit, "clock", lambda: time.time() - offset)


@pytest.fixture
def api_client() -> APIClient:
    return APIClient()


@pytest.fixture
def make_user(db: None) -> Callable[..., Any]:
    from accounts.models import User

    def make(**fields: Any) -> User:
        number = User.objects.count() + 1
        fields.setdefault("username", f"player{number}")
        fields.setdefault("email", f"player{number}@example.com")
        password = fields.pop("password", TEST_PASSWORD)
        return User.objects.create_user(password=password, **fields)

    return make


@pytest.fixture
def user(make_user: Callable[..., Any]) -> Any:
    return make_user(username="ProGamer123", email="pro@example.com", country="US")


@pytest.fixture
def auth_client(user: Any) -> APIClient:
    from accounts.services import token_pair_for_credentials

    pair = token_pair_for_credentials(username=user.username, password=TEST_PASSWORD)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {pair.access}")
    return client


@pytest.fixture
def server_processes() -> dict[str, subprocess.Popen[bytes]]:
    """The processes `start_server` started in this test, by base URL (to kill one)."""
    return {}


@pytest.fixture
def start_server(
    tmp_path_factory: pytest.TempPathFactory,
    server_processes: dict[str, subprocess.Popen[bytes]],
) -> Iterator[Callable[..., str]]:
    """Start the real ASGI app under uvicorn on a free loopback port; returns its base URL.
    With `wsgi=True`, the WSGI app under gunicorn instead, as the production API nodes run it
    (docker/gunicorn.conf.py, two workers unless GUNICORN_WORKERS says otherwise).

    The process gets production-like settings (DEBUG off), a SQLite file of its own unless
    the given environment names a database, and is stopped by its PID at teardown.
    """
    import socket
    import sys
    import time
    import urllib.request
    from pathlib import Path

    def start(log_path: Path | None = None, *, wsgi: bool = False, **env: str) -> str:
        """`env` overrides the process's environment; its output goes to `log_path` if given."""
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        base_env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
        process_env = {
            **base_env,
            "DJANGO_SETTINGS_MODULE": "scoreboard.settings",
            "DEBUG": "0",
            "SECRET_KEY": "test-secret-" + "x" * 40,
            "SCOREBOARD_JWT_SIGNING_KEY": "test-jwt-" + "y" * 40,
            "SCOREBOARD_ENCRYPTION_KEY": "test-encryption-" + "z" * 40,
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "DATABASE_URL": f"sqlite:///{tmp_path_factory.mktemp('server')}/db.sqlite3",
            **({"GUNICORN_WORKERS": "2"} if wsgi else {}),
            **env,
        }
        root = Path(__file__).resolve().parent
        if wsgi:
            server = ["gunicorn", "--config", str(root / "docker" / "gunicorn.conf.py")]
            server += ["--bind", f"127.0.0.1:{port}"]
        else:
            server = ["uvicorn", "scoreboard.asgi:application", "--host", "127.0.0.1"]
            server += ["--port", str(port), "--no-access-log"]
        with open(log_path or os.devnull, "ab") as output:  # the child keeps its own handle
            process = subprocess.Popen(  # noqa: S603
                [sys.executable, "-m", *server],
                cwd=root,
                env=process_env,
                stdout=output,
                stderr=subprocess.STDOUT,
                # gunicorn's workers are its children: one process group, to kill the node whole.
                start_new_session=wsgi,
            )
        base_url = f"http://127.0.0.1:{port}"
        server_processes[base_url] = process
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{base_url}/healthz", timeout=1):  # noqa: S310
                    return base_url
            except OSError:
                if process.poll() is not None:
                    raise RuntimeError("server exited during start-up") from None
                time.sleep(0.2)
        raise RuntimeError("server did not answer /healthz within 30 s")

    yield start
    for process in server_processes.values():
        stop_process(process)


def stop_process(process: subprocess.Popen[Any]) -> None:
    """SIGTERM a server started by a test, SIGKILL it after 10 s."""
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
