"""`manage.py apply_retention`: action tokens, old network details and expired refresh tokens
(docs/privacy.md)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken

from accounts.models import User
from scoring.models import ActionToken, ScoreUpdate
from scoring.tests.fixtures import GameServerKey, stored_action_token
from scoring.tests.moderation_fixtures import record_update

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 28, 3, 0, tzinfo=UTC)
DAY = timedelta(days=1)


@pytest.fixture
def retention(settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tokens kept 30 days after expiry, network details 90 days; the command runs at NOW."""
    settings.SCOREBOARD_ACTION_TOKEN_RETENTION_DAYS = 30
    settings.SCOREBOARD_AUDIT_DETAIL_RETENTION_DAYS = 90
    monkeypatch.setattr("django.utils.timezone.now", lambda: NOW)


@pytest.fixture
def backlog(
    retention: None, make_user: Callable[..., User], game_server: GameServerKey, catalog: None
) -> User:
    """Of each kind, two rows past retention and one within it."""
    player = make_user()
    for expired_days_ago in (45, 31, 29):
        stored_action_token(player, game_server, expires_at=NOW - expired_days_ago * DAY)
    for days_ago in (120, 91, 89):
        record_update(player, 10, at=NOW - days_ago * DAY)
    for expired_hours_ago in (48, 1, -1):
        token = OutstandingToken.objects.create(
            user=player,
            jti=uuid.uuid4().hex,
            token="…",
            created_at=NOW - 14 * DAY,
            expires_at=NOW - expired_hours_ago * timedelta(hours=1),
        )
        BlacklistedToken.objects.create(token=token)
    return player


def run(*args: str) -> list[str]:
    output = StringIO()
    call_command("apply_retention", *args, stdout=output)
    return output.getvalue().splitlines()


def test_the_command_applies_every_rule_and_says_what_it_did(backlog: User) -> None:
    # when retention is applied, in batches smaller than the backlog
    printed = run("--batch-size", "1")

    # then it says what it did
    assert printed == [
        "action tokens expired before 2026-10-29T03:00:00Z: deleted 2",
        "score updates recorded before 2026-08-30T03:00:00Z: "
        "cleared the IP address and user agent of 2",
        "refresh tokens expired before 2026-11-28T03:00:00Z: deleted 2",
    ]
    # and did it: one token, one update with details and one refresh token (with its
    # blacklist entry) are left within retention
    assert ActionToken.objects.count() == 1
    assert ScoreUpdate.objects.count() == 3
    assert ScoreUpdate.objects.filter(ip_address__isnull=False).count() == 1
    assert OutstandingToken.objects.count() == BlacklistedToken.objects.count() == 1


def test_a_second_run_finds_nothing_to_do(backlog: User) -> None:
    run()

    assert run() == [
        "action tokens expired before 2026-10-29T03:00:00Z: deleted 0",
        "score updates recorded before 2026-08-30T03:00:00Z: "
        "cleared the IP address and user agent of 0",
        "refresh tokens expired before 2026-11-28T03:00:00Z: deleted 0",
    ]


def test_a_dry_run_counts_and_changes_nothing(backlog: User) -> None:
    printed = run("--dry-run")

    assert printed == [
        "dry run: nothing is changed",
        "action tokens expired before 2026-10-29T03:00:00Z: would delete 2",
        "score updates recorded before 2026-08-30T03:00:00Z: "
        "would clear the IP address and user agent of 2",
        "refresh tokens expired before 2026-11-28T03:00:00Z: would delete 2",
    ]
    assert ActionToken.objects.count() == 3
    assert ScoreUpdate.objects.filter(ip_address__isnull=False).count() == 3
    assert OutstandingToken.objects.count() == 3


def test_the_command_refuses_an_empty_batch() -> None:
    with pytest.raises(CommandError, match="--batch-size must be at least 1"):
        call_command("apply_retention", "--batch-size", "0", stdout=StringIO())
