"""The live board page (/live/) in headless Chromium against the real server.

The server is the production ASGI app under uvicorn (the root conftest's `start_server`) with
DEBUG off, so static files come from STATIC_ROOT through WhiteNoise, exactly as deployed. With
DATABASE_URL and REDIS_URL set (CI's second pass) it runs on that PostgreSQL server, in a fresh
database of its own, and on that Redis under a key prefix of its own, so the Redis channel
layer, board index and broadcast state are what the page sees; otherwise on a SQLite file.

Players, game servers and scores are made through the server's own HTTP API and management
commands, never through this process's test database: the server cannot see that.
"""

from __future__ import annotations

import json
import os
import re
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
from playwright.sync_api import (
    Browser,
    Page,
    WebSocket,
    WebSocketRoute,
    expect,
    sync_playwright,
)

from conftest import TEST_PASSWORD, _missing_service
from scoring.anticheat import hmac_sha256_hex
from scoring.tests.fixtures import now_iso

pytestmark = pytest.mark.timeout(240)

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
# The longest the page may take to show what the server pushed (broadcasts are throttled to
# one a second per channel) or to finish signing in and connecting.
WAIT_MS = 15_000
# The production-like settings the server runs with; management commands run with the same,
# so they share its database and can decrypt what it encrypted.
SERVER_SETTINGS = {
    "DJANGO_SETTINGS_MODULE": "scoreboard.settings",
    "DEBUG": "0",
    "SECRET_KEY": "live-page-secret-" + "s" * 40,
    "SCOREBOARD_JWT_SIGNING_KEY": "live-page-jwt-" + "j" * 40,
    "SCOREBOARD_ENCRYPTION_KEY": "live-page-encryption-" + "e" * 40,
    "ALLOWED_HOSTS": "127.0.0.1,localhost",
}
PREPARE_SERVER = """
from django.core.management import call_command
call_command("migrate", interactive=False, verbosity=0)
call_command("load_actions")
call_command("create_game_server", "live-page-arena")
"""
SESSION_KEY = "scoreboard.live.session"
# A username the API would refuse. It stands for data that reached the database without
# passing validation (an old row, an admin edit, another service): the page must still show
# it as text and never run it.
HOSTILE_NAME = "<img src=x onerror=alert(1)>"


# ---- the server --------------------------------------------------------------------------


def manage(env: dict[str, str], *args: str) -> str:
    """Run a management command with the server's environment; returns what it printed."""
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


@dataclass
class LivePage:
    """A tab on the live board, with everything it did that a test must rule out."""

    page: Page
    dialogs: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    sockets: list[str] = field(default_factory=list)

    def by_id(self, test_id: str) -> Any:
        return self.page.get_by_test_id(test_id)

    @property
    def rows(self) -> Any:
        return self.by_id("board-row")

    def row_of(self, player: Player) -> Any:
        return self.page.locator(f'[data-testid="board-row"][data-user-id="{player.user_id}"]')

    def sign_in(self, username: str, password: str = TEST_PASSWORD) -> None:
        self.by_id("sign-in-username").fill(username)
        self.by_id("sign-in-password").fill(password)
        self.by_id("sign-in-submit").click()

    def stored_session(self) -> Any:
        return self.page.evaluate(f"JSON.parse(sessionStorage.getItem({SESSION_KEY!r}))")


@pytest.fixture
def live_page(chromium: Browser, live_site: LiveSite) -> Iterator[LivePage]:
    context = chromium.new_context(base_url=live_site.base_url)
    context.set_default_timeout(WAIT_MS)
    tab = LivePage(page=context.new_page())

    def on_dialog(dialog: Any) -> None:
        tab.dialogs.append(dialog.message)
        dialog.dismiss()

    def on_console(message: Any) -> None:
        if message.type == "error" and "Content Security Policy" in message.text:
            tab.problems.append(message.text)

    def on_socket(socket: WebSocket) -> None:
        tab.sockets.append(socket.url)

    tab.page.on("dialog", on_dialog)
    tab.page.on("console", on_console)
    tab.page.on("pageerror", lambda error: tab.problems.append(f"uncaught: {error}"))
    tab.page.on("websocket", on_socket)
    try:
        yield tab
    finally:
        context.close()


def assert_sockets_used_fresh_tickets(tab: LivePage, base_url: str) -> None:
    """Every connection carried a ticket of its own, never the JWT."""
    origin = base_url.replace("http://", "ws://", 1)
    tickets = []
    for url in tab.sockets:
        match = re.fullmatch(re.escape(f"{origin}/ws/leaderboard?ticket=") + r"([^&]+)", url)
        assert match is not None, url
        tickets.append(match[1])
    assert tickets
    assert len(set(tickets)) == len(tickets)


# ---- the tests ---------------------------------------------------------------------------


def test_the_board_moves_live_and_shows_hostile_names_as_text(
    live_page: LivePage, live_site: LiveSite
) -> None:
    # Given a player with 50 points, signed in on the live board
    alice = live_site.register("alice", country="US", avatar="https://127.0.0.1:9/alice.png")
    live_site.score(alice, "COMPLETE_QUEST")
    tab = live_page
    tab.page.goto("/live/")
    expect(tab.by_id("status")).to_have_attribute("data-state", "signed-out")
    tab.sign_in(alice.username)

    expect(tab.by_id("status")).to_have_attribute("data-state", "live")
    expect(tab.by_id("signed-in-user")).to_have_text(alice.username)
    expect(tab.rows).to_have_count(1)
    expect(tab.row_of(alice).get_by_test_id("rank")).to_have_text("1")
    expect(tab.row_of(alice).get_by_test_id("player-name")).to_have_text(alice.username)
    expect(tab.row_of(alice).get_by_test_id("country")).to_have_text("US")
    expect(tab.row_of(alice).get_by_test_id("score")).to_have_text("50")
    expect(tab.row_of(alice).locator("img")).to_have_attribute(
        "src", "https://127.0.0.1:9/alice.png"
    )

    # When another player scores 100 points through the API
    bob = live_site.register("bob", country="GB")
    live_site.score(bob, "WIN_GAME")

    # Then, without a reload, he tops the board as a newcomer and takes the lead
    expect(tab.rows).to_have_count(2)
    expect(tab.rows.nth(0).get_by_test_id("player-name")).to_have_text(bob.username)
    expect(tab.row_of(bob).get_by_test_id("rank")).to_have_text("1")
    expect(tab.row_of(bob).get_by_test_id("score")).to_have_text("100")
    expect(tab.row_of(alice).get_by_test_id("rank")).to_have_text("2")
    expect(tab.row_of(bob).get_by_test_id("movement")).to_have_text("new")
    expect(tab.row_of(alice).get_by_test_id("movement")).to_have_text("↓1")
    expect(tab.by_id("leader-banner")).to_have_text(
        f"{bob.username} took the lead with 100 points, ahead of {alice.username}."
    )

    # When a player whose name is markup takes the lead with 150 points
    mallory = live_site.create_unvalidated_user(HOSTILE_NAME, avatar="javascript:alert(2)")
    live_site.score(mallory, "WIN_GAME")
    live_site.score(mallory, "COMPLETE_QUEST")

    # Then the name is shown as the literal text, and nothing of it ran or became an element
    expect(tab.row_of(mallory).get_by_test_id("score")).to_have_text("150")
    expect(tab.rows.nth(0).get_by_test_id("player-name")).to_have_text(HOSTILE_NAME)
    expect(tab.by_id("leader-banner")).to_have_text(
        f"{HOSTILE_NAME} took the lead with 150 points, ahead of {bob.username}."
    )
    expect(tab.row_of(mallory).locator("img")).to_have_count(0)
    expect(tab.page.locator("img")).to_have_count(1)  # Alice's avatar, nothing else
    expect(tab.page.locator('img[src="x"]')).to_have_count(0)

    # When the viewer picks a country, the board is that country's all-time board
    tab.by_id("country-picker").select_option("US")
    expect(tab.by_id("board")).to_have_attribute("data-channel", "leaderboard.country.US.top10")
    expect(tab.rows).to_have_count(1)
    expect(tab.rows.nth(0).get_by_test_id("player-name")).to_have_text(alice.username)
    expect(tab.by_id("period-picker")).to_be_disabled()

    # And back to every country, this month: all three, best first
    tab.by_id("country-picker").select_option("")
    tab.by_id("period-picker").select_option("monthly")
    expect(tab.by_id("board")).to_have_attribute("data-channel", "leaderboard.monthly.top10")
    expect(tab.rows.get_by_test_id("player-name")).to_have_text(
        [HOSTILE_NAME, bob.username, alice.username]
    )
    expect(tab.by_id("status")).to_have_attribute("data-state", "live")

    assert tab.dialogs == []
    assert tab.problems == []
    assert len(tab.sockets) == 1  # channels were switched on the same connection
    assert_sockets_used_fresh_tickets(tab, live_site.base_url)


def test_a_signed_in_tab_stays_signed_in_across_reloads_until_signing_out(
    live_page: LivePage, live_site: LiveSite
) -> None:
    alice = live_site.register("alice")
    tab = live_page
    tab.page.goto("/live/")

    # A wrong password is refused on the form
    tab.sign_in(alice.username, password="not the password")
    expect(tab.by_id("sign-in-error")).to_have_text("Wrong username or password.")
    expect(tab.by_id("status")).to_have_attribute("data-state", "signed-out")

    # Signed in, the board connects; an empty board says so
    tab.sign_in(alice.username)
    expect(tab.by_id("status")).to_have_attribute("data-state", "live")
    expect(tab.by_id("board-empty")).to_be_visible()
    stored = tab.stored_session()
    assert stored["user"] == {"id": alice.user_id, "username": alice.username}
    assert "signingKey" not in stored

    # A reload keeps the session and connects again, with a new ticket
    tab.page.reload()
    expect(tab.by_id("status")).to_have_attribute("data-state", "live")
    expect(tab.by_id("signed-in-user")).to_have_text(alice.username)

    # Signing out forgets the tokens, also after a reload
    tab.by_id("sign-out").click()
    expect(tab.by_id("status")).to_have_attribute("data-state", "signed-out")
    expect(tab.by_id("sign-in-form")).to_be_visible()
    assert tab.stored_session() is None
    tab.page.reload()
    expect(tab.by_id("sign-in-form")).to_be_visible()
    expect(tab.by_id("status")).to_have_attribute("data-state", "signed-out")

    assert tab.problems == []
    assert len(tab.sockets) == 2
    assert_sockets_used_fresh_tickets(tab, live_site.base_url)


def test_a_rejected_access_token_is_renewed_with_the_refresh_token(
    live_page: LivePage, live_site: LiveSite
) -> None:
    alice = live_site.register("alice")
    tab = live_page
    tab.page.goto("/live/")

    # Given a stored session whose access token the server refuses
    stale = {
        "accessToken": "not-a-valid-token",
        "refreshToken": alice.refresh,
        "user": {"id": alice.user_id, "username": alice.username},
    }
    tab.page.evaluate(
        "([key, value]) => sessionStorage.setItem(key, value)", [SESSION_KEY, json.dumps(stale)]
    )
    tab.page.reload()

    # Then the page trades the refresh token for a new pair and goes live
    expect(tab.by_id("status")).to_have_attribute("data-state", "live")
    renewed = tab.stored_session()
    assert renewed["accessToken"] != stale["accessToken"]
    assert renewed["refreshToken"] != alice.refresh

    # And once the refresh token is no good either, it asks to sign in again
    tab.page.evaluate(
        "([key, value]) => sessionStorage.setItem(key, value)", [SESSION_KEY, json.dumps(stale)]
    )  # the refresh token in `stale` was used up above: rotation revoked it
    tab.page.reload()
    expect(tab.by_id("status")).to_have_attribute("data-state", "signed-out")
    expect(tab.by_id("sign-in-error")).to_have_text(
        "Your session has expired. Please sign in again."
    )
    assert tab.stored_session() is None
    assert tab.problems == []


# Playwright's WebSocket routing sits between the page and the real server: it relays both
# ways, and lets a test cut a connection or lose a frame, as a network or a restart would.


@dataclass
class RelayedSocket:
    page_side: WebSocketRoute
    server_side: WebSocketRoute
    from_page: list[dict[str, Any]] = field(default_factory=list)


def relay_sockets(tab: LivePage, *, lose: Callable[[dict[str, Any]], bool]) -> list[RelayedSocket]:
    """Relay every live socket of the tab, recording what the page sends and dropping the
    server frames `lose` picks. Returns the connections, in order."""
    relayed: list[RelayedSocket] = []

    def route(page_side: WebSocketRoute) -> None:
        connection = RelayedSocket(page_side, page_side.connect_to_server())

        def from_page(message: str | bytes) -> None:
            connection.from_page.append(json.loads(message))
            connection.server_side.send(message)

        def from_server(message: str | bytes) -> None:
            if not lose(json.loads(message)):
                page_side.send(message)

        page_side.on_message(from_page)
        connection.server_side.on_message(from_server)
        relayed.append(connection)

    tab.page.route_web_socket(re.compile(r".*/ws/leaderboard\b.*"), route)
    return relayed


def wait_until(tab: LivePage, condition: Callable[[], bool], *, timeout_ms: int = WAIT_MS) -> None:
    """Poll a condition on the test's side, letting Playwright deliver events meanwhile."""
    for _ in range(timeout_ms // 50):
        if condition():
            return
        tab.page.wait_for_timeout(50)
    assert condition(), f"not true within {timeout_ms} ms"


def test_a_lost_connection_is_reopened_with_a_fresh_ticket(
    live_page: LivePage, live_site: LiveSite
) -> None:
    alice = live_site.register("alice")
    live_site.score(alice, "COMPLETE_QUEST")
    tab = live_page
    sockets = relay_sockets(tab, lose=lambda frame: False)
    tab.page.goto("/live/")
    tab.sign_in(alice.username)
    expect(tab.by_id("status")).to_have_attribute("data-state", "live")
    expect(tab.rows).to_have_count(1)

    # When the connection drops (the server restarted: 1012)
    sockets[0].page_side.close(code=1012, reason="restart")

    # Then the page says it will reconnect, after about a second, and does so and subscribes
    expect(tab.by_id("status")).to_have_text(re.compile(r"Reconnecting in 1 s"))
    expect(tab.by_id("status")).to_have_attribute("data-state", "live")
    wait_until(tab, lambda: len(sockets) == 2 and len(sockets[1].from_page) >= 1)
    assert sockets[1].from_page[0] == {
        "event": "subscribe",
        "data": {"channel": "leaderboard.top10"},
    }
    expect(tab.rows).to_have_count(1)

    # When the server refuses the credential (4401), the page renews its tokens and comes back
    refresh_before = tab.stored_session()["refreshToken"]
    sockets[1].page_side.close(code=4401, reason="unauthorized")
    wait_until(tab, lambda: len(sockets) == 3)
    expect(tab.by_id("status")).to_have_attribute("data-state", "live")
    assert tab.stored_session()["refreshToken"] != refresh_before

    assert tab.problems == []
    assert len(tab.sockets) == 3
    assert_sockets_used_fresh_tickets(tab, live_site.base_url)


def test_a_gap_in_seq_makes_the_page_ask_for_a_fresh_snapshot(
    live_page: LivePage, live_site: LiveSite
) -> None:
    alice = live_site.register("alice")
    bob = live_site.register("bob")
    live_site.score(alice, "COMPLETE_QUEST")
    tab = live_page
    lost: list[dict[str, Any]] = []

    def lose_first_update(frame: dict[str, Any]) -> bool:
        """Lose the first update that is not a snapshot, as a dropped frame would be."""
        if frame["event"] == "leaderboard.update" and not frame["data"]["snapshot"] and not lost:
            lost.append(frame)
            return True
        return False

    sockets = relay_sockets(tab, lose=lose_first_update)
    tab.page.goto("/live/")
    tab.sign_in(alice.username)
    expect(tab.rows).to_have_count(1)

    # Given an update the page never received
    live_site.score(alice, "ACHIEVEMENT_UNLOCK")
    wait_until(tab, lambda: bool(lost))
    expect(tab.row_of(alice).get_by_test_id("score")).to_have_text("50")

    # When the next update arrives with a seq one too far
    live_site.score(bob, "WIN_GAME")

    # Then the page subscribes again instead of applying it, and shows the fresh snapshot
    subscribe = {"event": "subscribe", "data": {"channel": "leaderboard.top10"}}
    wait_until(tab, lambda: sockets[0].from_page.count(subscribe) == 2)
    expect(tab.rows.get_by_test_id("player-name")).to_have_text([bob.username, alice.username])
    expect(tab.row_of(alice).get_by_test_id("score")).to_have_text("75")
    assert len(sockets) == 1
    assert tab.problems == []
