"""The live board page (/live/) in headless Chromium against the real server
(scoreboard/tests/served.py): DEBUG off, static files from STATIC_ROOT through WhiteNoise as
deployed, and in CI's second pass the Redis channel layer, board index and broadcast state.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from playwright.sync_api import (
    Browser,
    Page,
    WebSocket,
    WebSocketRoute,
    expect,
)

from conftest import TEST_PASSWORD
from scoreboard.tests.served import WAIT_MS, LiveSite, Player

pytestmark = pytest.mark.timeout(240)

SESSION_KEY = "scoreboard.live.session"
# A username the API would refuse. It stands for data that reached the database without
# passing validation (an old row, an admin edit, another service): the page must still show
# it as text and never run it.
HOSTILE_NAME = "<img src=x onerror=alert(1)>"


# ---- the browser -------------------------------------------------------------------------


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
