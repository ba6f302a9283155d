"""A real server for browser and end-to-end tests: the production ASGI app under uvicorn (the
root conftest's `start_server`) with DEBUG off, its own database and Redis key space, static
files collected for it, and Debian's chromium driven by Playwright. Loaded by the root
conftest, so every app's browser tests share it.

With DATABASE_URL and REDIS_URL set (CI's second pass) the server runs on that PostgreSQL
server, in a fresh database of its own, and on that Redis under a key prefix of its own;
otherwise on a SQLite file. Players, game servers and scores are made through the server's own
HTTP API and management commands, never through the test process's database: the server
cannot see that.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, expect, sync_playwright

from conftest import TEST_PASSWORD, _missing_service
from scoring.anticheat import hmac_sha256_hex
from scoring.tests.fixtures import now_iso

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# The longest a page may take to show what the server pushed (live broadcasts are throttled to
# one a second per channel) or to finish signing in and connecting.
WAIT_MS = 15_000
# The production-like settings the server runs with; management commands run with the same,
# so they share its database and can decrypt what it encrypted.
SERVER_SETTINGS = {
    "DJANGO_SETTINGS_MODULE": "scoreboard.settings",
    "DEBUG": "0",
    "SECRET_KEY": "served-secret-" + "s" * 40,
    "SCOREBOARD_JWT_SIGNING_KEY": "served-jwt-" + "j" * 40,
    "SCOREBOARD_ENCRYPTION_KEY": "served-encryption-" + "e" * 40,
    "ALLOWED_HOSTS": "127.0.0.1,localhost",
}
PREPARE_SERVER = """
from django.core.management import call_command
call_command("migrate", interactive=False, verbosity=0)
call_command("load_actions")
call_command("create_game_server", "served-arena")
"""


# ---- the server --------------------------------------------------------------------------


def manage(env: dict[str, str], *args: str) -> str:
    """Run a management command with the server's settings, overridden by `env` (its
    database and Redis, or other settings of a caller's own); returns what it printed."""
    base = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    result = subprocess.run(  # noqa: S603
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**base, **SERVER_SETTINGS, **env},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, f"manage.py {args[0]} failed:\n{result.stderr}"
    return result.stdout


@contextmanager
def fresh_postgres_database(url: str) -> Iterator[str]:
    """The URL of a new database on the PostgreSQL server of `url`, dropped afterwards.

    Not the database `url` names: the server's writes outlive the test, and another run's
    players would crowd the top 10 this test watches (pytest-django's `test_<name>` is the
    same idea).
    """
    import psycopg
    from psycopg import sql

    parts = urllib.parse.urlsplit(url)
    name = f"{parts.path.lstrip('/') or 'postgres'}_live_{secrets.token_hex(4)}"[-63:]
    try:
        with psycopg.connect(url, autocommit=True, connect_timeout=3) as admin:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    except psycopg.OperationalError as error:
        _missing_service(f"PostgreSQL at {url} is unreachable: {error}")
        raise  # not reached: _missing_service skips or fails
    try:
        yield urllib.parse.urlunsplit(parts._replace(path=f"/{name}"))
    finally:
        with psycopg.connect(url, autocommit=True, connect_timeout=3) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def delete_redis_keys(url: str, prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=2)
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    if keys:
        client.delete(*keys)


@pytest.fixture(scope="session")
def server_redis_url() -> str:
    """REDIS_URL when it is set, checked; empty otherwise (the server then runs without
    Redis, unlike tests asking for the root conftest's `redis_url`, which has a default)."""
    url = os.environ.get("REDIS_URL", "").strip()
    if not url:
        return ""
    import redis

    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except redis.exceptions.RedisError as error:
        _missing_service(f"Redis at {url} is unreachable: {error}")
    return url


@pytest.fixture
def server_services(tmp_path: Path, server_redis_url: str) -> Iterator[dict[str, str]]:
    """DATABASE_URL, and REDIS_URL with REDIS_KEY_PREFIX, for the server: the configured
    services when there are, each with a space of its own, else a SQLite file and no Redis."""
    env: dict[str, str] = {}
    database_url = os.environ.get("DATABASE_URL", "").strip()
    with ExitStack() as cleanup:
        if database_url.startswith(("postgres://", "postgresql://")):
            env["DATABASE_URL"] = cleanup.enter_context(fresh_postgres_database(database_url))
        else:
            env["DATABASE_URL"] = f"sqlite:///{tmp_path / 'server.sqlite3'}"
        if server_redis_url:
            prefix = f"live-page-{secrets.token_hex(4)}"
            env.update(REDIS_URL=server_redis_url, REDIS_KEY_PREFIX=prefix)
            cleanup.callback(delete_redis_keys, server_redis_url, prefix)
        yield env


@pytest.fixture(scope="session")
def collected_static(tmp_path_factory: pytest.TempPathFactory) -> str:
    """With DEBUG off WhiteNoise serves STATIC_ROOT (with hashed names from the manifest)
    and the page's {% static %} tags need that manifest: collect once, as `make run` does,
    into a folder of the test's own. Returns that STATIC_ROOT."""
    folder = tmp_path_factory.mktemp("collectstatic")
    env = {"DATABASE_URL": f"sqlite:///{folder / 'unused.sqlite3'}", "STATIC_ROOT": str(folder)}
    manage(env, "collectstatic", "--noinput", "-v", "0")
    return str(folder)


@dataclass
class Player:
    user_id: str
    username: str
    access: str
    refresh: str
    signing_key: str


@dataclass
class LiveSite:
    base_url: str
    env: dict[str, str]
    key_id: str
    secret: str
    suffix: str = field(default_factory=lambda: secrets.token_hex(3))

    def call(
        self, path: str, body: Any, *, token: str = "", headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, Any]]:
        request = urllib.request.Request(  # noqa: S310
            self.base_url + path,
            data=json.dumps(body).encode(),
            headers={
                "Content-Type": "application/json",
                **({"Authorization": f"Bearer {token}"} if token else {}),
                **(headers or {}),
            },
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
                return response.status, json.load(response)
        except urllib.error.HTTPError as error:
            return error.code, json.load(error)

    def post(self, path: str, body: Any, *, expect_status: int, **options: Any) -> Any:
        status, payload = self.call(path, body, **options)
        assert status == expect_status, (path, status, payload)
        return payload["data"]

    def name(self, stem: str) -> str:
        return f"{stem}_{self.suffix}"

    def register(self, stem: str, **profile: str) -> Player:
        username = self.name(stem)
        self.post(
            "/api/v1/auth/register",
            {
                "username": username,
                "email": f"{username}@example.com",
                "password": TEST_PASSWORD,
                **profile,
            },
            expect_status=201,
        )
        return self.sign_in(username)

    def sign_in(self, username: str) -> Player:
        data = self.post(
            "/api/v1/auth/token",
            {"username": username, "password": TEST_PASSWORD},
            expect_status=200,
        )
        return Player(
            user_id=data["user"]["id"],
            username=data["user"]["username"],
            access=data["accessToken"],
            refresh=data["refreshToken"],
            signing_key=data["signingKey"],
        )

    def create_unvalidated_user(self, username: str, **fields: str) -> Player:
        """A user written straight to the server's database, past the API's validation."""
        script = (
            "from accounts.models import User\n"
            f"User.objects.create_user(username={username!r}, "
            f"email={f'unvalidated-{self.suffix}@example.com'!r}, "
            f"password={TEST_PASSWORD!r}, **{fields!r})\n"
        )
        manage(self.env, "shell", "--no-startup", "-c", script)
        return self.sign_in(username)

    def score(self, player: Player, action_type: str) -> dict[str, Any]:
        """The README's score flow: the game server's proof, the action token, the signed
        update. Returns the update's result."""
        action_id = str(uuid.uuid4())
        moment = now_iso()
        proof = hmac_sha256_hex(self.secret, f"{player.user_id}:{action_type}:{action_id}:{moment}")
        issued = self.post(
            "/api/v1/actions/complete",
            {
                "actionId": action_id,
                "actionType": action_type,
                "timestamp": moment,
                "proof": {"keyId": self.key_id, "signature": proof},
            },
            token=player.access,
            expect_status=201,
        )
        increment = issued["scoreIncrement"]
        signed = f"{player.user_id}{action_id}{moment}{increment}"
        result: dict[str, Any] = self.post(
            "/api/v1/scores/update",
            {
                "userId": player.user_id,
                "actionType": action_type,
                "actionId": action_id,
                "scoreIncrement": increment,
                "timestamp": moment,
                "clientSignature": hmac_sha256_hex(player.signing_key, signed),
            },
            token=player.access,
            headers={"X-Action-Token": issued["actionToken"]},
            expect_status=200,
        )
        return result


@pytest.fixture
def live_site(
    server_services: dict[str, str],
    collected_static: str,
    start_server: Callable[..., str],
) -> LiveSite:
    """The server, migrated, with the action catalog and one game server. (Requested after
    `server_services`, so it stops before its database is dropped.)"""
    env = {**server_services, "STATIC_ROOT": collected_static}
    # `manage.py migrate`, `load_actions` and `create_game_server` in one process (each one
    # alone would start Django again); the last line printed is the game server's key.
    printed = manage(env, "shell", "--no-startup", "-c", PREPARE_SERVER)
    credentials = json.loads(printed.strip().splitlines()[-1])
    base_url = start_server(**SERVER_SETTINGS, **env)
    return LiveSite(
        base_url=base_url, env=env, key_id=credentials["keyId"], secret=credentials["secret"]
    )


# ---- the browser -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    """Debian's chromium (`make test` installs it); Playwright's own browser download is not
    used."""
    executable = shutil.which("chromium") or ""
    if not executable:
        _missing_service("chromium is not installed (`make test` installs Debian's chromium)")
    expect.set_options(timeout=WAIT_MS)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable, args=CHROMIUM_ARGS, timeout=60_000
        )
        try:
            yield browser
        finally:
            browser.close()
