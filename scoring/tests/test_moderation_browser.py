"""The moderation queue in headless Chromium against the real server: a moderator signs in to
the admin, approves a held update from its page, rejects a flagged one in bulk and bans the
player, and the board the API serves follows each decision.

The server, its database (a SQLite file, or a fresh PostgreSQL database and a Redis key prefix
of its own when DATABASE_URL and REDIS_URL are set), the collected static files and the
browser come from scoreboard/tests/served.py. Flagged and held updates are written straight
into the server's database, as the anomaly rules would leave them (they are tested on their
own); everything else goes through HTTP.
"""

from __future__ import annotations

import json
import re
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from conftest import TEST_PASSWORD
from scoreboard.tests import served as live

pytestmark = pytest.mark.timeout(240)

SETUP = """
from django.conf import settings
from django.core.management import call_command
from accounts.models import User
from scoring.models import ScoreStatus
from scoring.tests.moderation_fixtures import IP_HOP, TOO_FAST, record_update

User.objects.create_user(
    username={moderator!r}, email={moderator!r} + "@example.com", password={password!r},
    role="moderator",
)
cheater = User.objects.get(username={cheater!r})
record_update(cheater, 100, status=ScoreStatus.FLAGGED, reasons=[IP_HOP])
record_update(cheater, 400, status=ScoreStatus.HELD, reasons=[TOO_FAST])
if settings.REDIS_URL:
    call_command("rebuild_leaderboards")
"""


def board(site: live.LiveSite, player: live.Player) -> dict[str, int]:
    """The all-time top 10 as the API serves it: username → score."""
    request = urllib.request.Request(  # noqa: S310
        f"{site.base_url}/api/v1/leaderboard/top",
        headers={"Authorization": f"Bearer {player.access}"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        rows = json.load(response)["data"]["leaderboard"]
    return {row["username"]: row["score"] for row in rows}


@pytest.fixture
def admin_page(chromium: Browser, live_site: live.LiveSite) -> Iterator[Page]:
    context = chromium.new_context(base_url=live_site.base_url)
    context.set_default_timeout(live.WAIT_MS)
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(str(error)))
    try:
        yield page
    finally:
        context.close()
    assert problems == []


def success_message(page: Page) -> Any:
    return page.locator("ul.messagelist li.success")


def test_a_moderator_clears_and_reverts_cheats_from_the_queue(
    admin_page: Page, live_site: live.LiveSite
) -> None:
    # Given an honest player on 50 and a cheater on 100 + 100 flagged, with 400 held
    alice = live_site.register("alice")
    live_site.score(alice, "COMPLETE_QUEST")
    cheater = live_site.register("speedy")
    live_site.score(cheater, "WIN_GAME")
    moderator = live_site.name("mod")
    live.manage(
        live_site.env,
        "shell",
        "--no-startup",
        "-c",
        SETUP.format(moderator=moderator, password=TEST_PASSWORD, cheater=cheater.username),
    )
    assert board(live_site, alice) == {cheater.username: 200, alice.username: 50}

    # When the moderator signs in to the admin, the queue lists both suspicious updates
    page = admin_page
    page.goto("/admin/scoring/reviewitem/")
    page.locator("#id_username").fill(moderator)
    page.locator("#id_password").fill(TEST_PASSWORD)
    page.locator("input[type=submit]").click()
    rows = page.locator("#result_list tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.filter(has_text="TOO_FAST")).to_contain_text(cheater.username)
    expect(rows.filter(has_text="IP_HOP")).to_contain_text("200")  # the player's total

    # And filtering on held updates leaves the held one, whose page shows the player
    page.get_by_role("link", name="Held for review (not counted)").click()
    expect(rows).to_have_count(1)
    rows.first.locator("th a").click()
    expect(page.get_by_test_id("total-ALL_TIME")).to_have_text("200")
    expect(page.get_by_test_id("history-panel").locator("tbody tr")).to_have_count(3)

    # When they approve it, the 400 held points count on the board
    page.get_by_test_id("review-reason").fill("replay checked")
    page.get_by_test_id("approve").click()
    expect(success_message(page)).to_have_text(
        f"Approved: +400 points counted for {cheater.username}."
    )
    expect(page.get_by_test_id("total-ALL_TIME")).to_have_text("600")
    assert board(live_site, alice) == {cheater.username: 600, alice.username: 50}

    # When they reject the flagged update from the list, its 100 points are reverted
    page.goto("/admin/scoring/reviewitem/")
    expect(rows).to_have_count(1)
    rows.first.locator("input.action-select").check()
    page.locator("select[name=action]").select_option("reject_selected")
    page.locator("input[name=reason]").fill("IP farm")
    page.locator("button[name=index]").click()
    expect(success_message(page)).to_have_text("1 rejected.")
    expect(page.locator("#result_list")).to_have_count(0)  # the queue is empty
    assert board(live_site, alice) == {cheater.username: 500, alice.username: 50}

    # And the decided updates are listed with who decided
    page.get_by_role("link", name="Decided").click()
    expect(rows).to_have_count(2)
    expect(rows.filter(has_text="REJECTED")).to_contain_text(moderator)

    # When they ban the cheater from an update's page, the board drops them
    rows.filter(has_text="REJECTED").locator("th a").click()
    page.get_by_test_id("review-reason").fill("cheating")
    page.get_by_test_id("ban").click()
    expect(success_message(page)).to_have_text(f"Banned {cheater.username}.")
    expect(page.get_by_test_id("ban")).to_have_count(0)
    assert board(live_site, alice) == {alice.username: 50}

    # And the decision log has the three decisions
    page.goto("/admin/scoring/moderationdecision/")
    expect(page.locator("#result_list tbody tr")).to_have_count(3)
    expect(page.locator("#result_list")).to_contain_text(re.compile("IP farm"))
