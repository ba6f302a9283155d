"""scoring.privacy: what an erased player leaves in the score pipeline, and the retention of
network details and action tokens."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.utils import timezone
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.django import TestCase

from accounts.models import User
from conftest import TEST_PASSWORD
from scoring.models import ActionToken, ScoreStatus, ScoreUpdate
from scoring.privacy import (
    action_tokens_prune,
    audit_details_prune,
    user_scoring_anonymise,
)
from scoring.tests.fixtures import GameServerKey, stored_action_token
from scoring.tests.moderation_fixtures import IP_HOP, TOO_FAST, record_update

pytestmark = pytest.mark.django_db

NOW = timezone.now()
DAY = timedelta(days=1)
REDACTED_IP_HOP = {
    **IP_HOP,
    "detail": "Another address 2 s after the previous update (addresses removed).",
}


def details(update: ScoreUpdate) -> tuple[Any, ...]:
    update.refresh_from_db()
    return (update.ip_address, update.user_agent, update.risk_reasons)


@pytest.fixture
def make_token(game_server: GameServerKey, catalog: None) -> Callable[..., ActionToken]:
    def make(user: User, *, expires_at: datetime, spent: bool = False) -> ActionToken:
        token = stored_action_token(
            user,
            game_server,
            expires_at=expires_at,
            used_at=expires_at - timedelta(minutes=4) if spent else None,
            is_valid=not spent,
        )
        if spent:
            update = record_update(user, 100, at=expires_at - timedelta(minutes=4))
            ScoreUpdate.objects.filter(pk=update.pk).update(action_token=token)
        return token

    return make


# --- erasure --------------------------------------------------------------------------------


def test_an_erased_players_updates_lose_their_network_details_and_nothing_else(
    make_user: Callable[..., User],
) -> None:
    # given two players' updates with addresses, user agents and risk reasons
    erased, other = make_user(), make_user()
    hop = record_update(erased, 50, status=ScoreStatus.FLAGGED, reasons=[TOO_FAST, IP_HOP])
    held = record_update(erased, 25, status=ScoreStatus.HELD, ip_address="2001:db8::1")
    others = record_update(other, 10, reasons=[IP_HOP])
    before = {
        row.pk: (row.status, row.score_increment, row.new_score, row.created_at)
        for row in ScoreUpdate.objects.all()
    }

    # when one player's score data is anonymised
    user_scoring_anonymise(user_id=erased.pk)

    # then their updates keep everything but the address, agent and quoted addresses
    assert details(hop) == (None, "", [TOO_FAST, REDACTED_IP_HOP])
    assert details(held) == (None, "", [])
    assert details(others) == ("203.0.113.7", "pytest", [IP_HOP])
    assert {
        row.pk: (row.status, row.score_increment, row.new_score, row.created_at)
        for row in ScoreUpdate.objects.all()
    } == before


def test_an_erased_players_unspent_action_tokens_stop_working(
    make_user: Callable[..., User], make_token: Callable[..., ActionToken]
) -> None:
    # given an unspent, a spent and another player's token
    erased, other = make_user(), make_user()
    unspent = make_token(erased, expires_at=NOW + DAY)
    spent = make_token(erased, expires_at=NOW + DAY, spent=True)
    others = make_token(other, expires_at=NOW + DAY)

    # when the player's score data is anonymised
    user_scoring_anonymise(user_id=erased.pk)

    # then only the unspent one of theirs is invalid
    states = dict(ActionToken.objects.values_list("pk", "is_valid"))
    assert states == {unspent.pk: False, spent.pk: False, others.pk: True}
    spent.refresh_from_db()
    assert spent.used_at is not None


# --- retention of network details -----------------------------------------------------------


def test_old_updates_lose_their_network_details_in_batches(make_user: Callable[..., User]) -> None:
    # given five updates older than the cut-off (one quoting addresses) and one newer
    player = make_user()
    old = [record_update(player, 10, at=NOW - 100 * DAY) for _ in range(4)]
    old.append(record_update(player, 10, at=NOW - 91 * DAY, reasons=[IP_HOP]))
    recent = record_update(player, 10, at=NOW - 89 * DAY, reasons=[IP_HOP])

    # when details older than 90 days are pruned two rows at a time
    cleared = audit_details_prune(before=NOW - 90 * DAY, batch_size=2)

    # then exactly the old rows lost them
    assert cleared == 5
    assert [details(update) for update in old] == [(None, "", [])] * 4 + [
        (None, "", [REDACTED_IP_HOP])
    ]
    assert details(recent) == ("203.0.113.7", "pytest", [IP_HOP])
    # and a second run finds nothing left to do
    assert audit_details_prune(before=NOW - 90 * DAY, batch_size=2) == 0


def test_a_dry_run_counts_the_updates_and_changes_nothing(make_user: Callable[..., User]) -> None:
    player = make_user()
    old = record_update(player, 10, at=NOW - 100 * DAY, reasons=[IP_HOP])
    record_update(player, 10, at=NOW - 100 * DAY, ip_address=None)  # still has a user agent

    assert audit_details_prune(before=NOW - 90 * DAY, dry_run=True) == 2
    assert details(old) == ("203.0.113.7", "pytest", [IP_HOP])


class TestDetailRetentionProperties(TestCase):
    @settings(max_examples=25, deadline=None)
    @given(
        ages=st.lists(st.integers(min_value=0, max_value=200), max_size=15),
        with_address=st.lists(st.booleans(), min_size=15, max_size=15),
        batch_size=st.integers(min_value=1, max_value=4),
    )
    def test_exactly_the_updates_older_than_the_cut_off_lose_their_details(
        self, ages: list[int], with_address: list[bool], batch_size: int
    ) -> None:
        # given updates of any age, with or without an address
        player = User.objects.create_user("player", "player@example.com", TEST_PASSWORD)
        updates = [
            record_update(
                player,
                10,
                at=NOW - age * DAY,
                ip_address="203.0.113.7" if address else None,
            )
            for age, address in zip(ages, with_address, strict=False)
        ]

        # when details older than 90 days are pruned
        cleared = audit_details_prune(before=NOW - 90 * DAY, batch_size=batch_size)

        # then the old ones have none, the others are as they were
        for age, address, update in zip(ages, with_address, updates, strict=False):
            expected = (None, "") if age > 90 else ("203.0.113.7" if address else None, "pytest")
            assert details(update)[:2] == expected
        assert cleared == sum(1 for age in ages if age > 90)


# --- retention of action tokens -------------------------------------------------------------


def test_tokens_expired_before_the_cut_off_are_deleted_and_their_updates_stay(
    make_user: Callable[..., User], make_token: Callable[..., ActionToken]
) -> None:
    # given tokens that expired long ago (unspent, and spent by an update), lately, or not yet
    player = make_user()
    old_unspent = make_token(player, expires_at=NOW - 40 * DAY)
    old_spent = make_token(player, expires_at=NOW - 31 * DAY, spent=True)
    lately = make_token(player, expires_at=NOW - 29 * DAY, spent=True)
    live = make_token(player, expires_at=NOW + DAY)

    # when tokens expired over 30 days ago are pruned, one per batch
    deleted = action_tokens_prune(before=NOW - 30 * DAY, batch_size=1)

    # then the two old ones are gone, and the update that spent one stays, unlinked
    assert deleted == 2
    assert set(ActionToken.objects.values_list("pk", flat=True)) == {lately.pk, live.pk}
    assert not ActionToken.objects.filter(pk__in=[old_unspent.pk, old_spent.pk]).exists()
    assert ScoreUpdate.objects.count() == 2
    assert ScoreUpdate.objects.filter(action_token__isnull=True).count() == 1
    assert ScoreUpdate.objects.filter(action_token=lately).exists()
    # and a second run deletes nothing
    assert action_tokens_prune(before=NOW - 30 * DAY) == 0


def test_a_token_dry_run_counts_and_deletes_nothing(
    make_user: Callable[..., User], make_token: Callable[..., ActionToken]
) -> None:
    player = make_user()
    make_token(player, expires_at=NOW - 40 * DAY, spent=True)

    assert action_tokens_prune(before=NOW - 30 * DAY, dry_run=True) == 1
    assert ActionToken.objects.count() == 1
