"""Concurrent decisions on one update, against the real database (SQLite file or
PostgreSQL): each thread has its own connection, so these are real concurrent transactions.
Whatever the interleaving, a decision applies once."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from rest_framework.test import APIClient

from accounts.models import User
from accounts.services import token_pair_for_credentials
from conftest import TEST_PASSWORD
from scoreboard.config import Rate
from scoreboard.errors import ApplicationError
from scoring.models import ModerationDecision, ScoreStatus, ScoreUpdate
from scoring.moderation import score_update_approve, score_update_reject, user_ban
from scoring.tests.moderation_fixtures import (
    all_time_score,
    ledger_totals,
    record_update,
    totals_of,
    versions_of,
)
from scoring.tests.test_concurrency import run_concurrently

pytestmark = pytest.mark.django_db(transaction=True)


def test_sixteen_concurrent_approvals_of_a_held_update_count_it_once(
    cheater: User, make_moderator: Callable[..., User]
) -> None:
    moderators = [make_moderator() for _ in range(4)]
    held = record_update(cheater, 100, status=ScoreStatus.HELD)

    outcomes = run_concurrently(
        lambda n: score_update_approve(update_id=held.pk, moderator=moderators[n % 4]), 16
    )

    assert sorted(outcome.changed for outcome in outcomes) == [False] * 15 + [True]
    assert len({outcome.decision.pk for outcome in outcomes}) == 1
    assert ModerationDecision.objects.count() == 1
    assert all_time_score(cheater) == 100
    # Each total was written once (created at version 1 by the one approval)
    assert versions_of(cheater) == dict.fromkeys(totals_of(cheater), 1)


@pytest.mark.parametrize("status", [ScoreStatus.COUNTED, ScoreStatus.FLAGGED])
def test_sixteen_concurrent_rejections_revert_once(
    cheater: User, make_moderator: Callable[..., User], status: str
) -> None:
    moderator = make_moderator()
    record_update(cheater, 30)
    update = record_update(cheater, 100, status=status)

    outcomes = run_concurrently(
        lambda _: score_update_reject(update_id=update.pk, moderator=moderator), 16
    )

    assert sorted(outcome.changed for outcome in outcomes) == [False] * 15 + [True]
    reversal = ScoreUpdate.objects.get(status=ScoreStatus.REVERSAL)
    assert {outcome.reversal.pk for outcome in outcomes if outcome.reversal} == {reversal.pk}
    assert all_time_score(cheater) == 30
    assert totals_of(cheater) == ledger_totals(cheater)
    assert ModerationDecision.objects.count() == 1


def test_approvals_and_rejections_racing_on_a_held_update_leave_it_rejected_and_uncounted(
    cheater: User, make_moderator: Callable[..., User]
) -> None:
    moderator = make_moderator()
    record_update(cheater, 30)
    held = record_update(cheater, 100, status=ScoreStatus.HELD)

    def decide(n: int) -> str:
        decide = score_update_approve if n % 2 else score_update_reject
        try:
            outcome = decide(update_id=held.pk, moderator=moderator)
        except ApplicationError as error:
            return error.error_code
        return f"{decide.__name__}:{outcome.changed}"

    results = run_concurrently(decide, 16)

    # Serialised in some order: the first rejection wins (discarding the hold, or reverting
    # an approval that came first); approvals after it conflict, rejections after it repeat.
    held.refresh_from_db()
    assert held.status == ScoreStatus.REJECTED
    assert results.count("score_update_reject:True") == 1
    assert results.count("score_update_approve:True") <= 1
    assert set(results) <= {
        "score_update_reject:True",
        "score_update_reject:False",
        "score_update_approve:True",
        "score_update_approve:False",
        "DECISION_CONFLICT",
    }
    assert ScoreUpdate.objects.filter(status=ScoreStatus.REVERSAL).count() == results.count(
        "score_update_approve:True"
    )
    assert all_time_score(cheater) == 30
    assert totals_of(cheater) == ledger_totals(cheater)


def test_concurrent_rejections_through_the_api_revert_once(
    cheater: User, moderator: User, settings: Any
) -> None:
    settings.SCOREBOARD_RATE_API_PER_IP = Rate(1000, 60)
    flagged = record_update(cheater, 100, status=ScoreStatus.FLAGGED)
    access = token_pair_for_credentials(username=moderator.username, password=TEST_PASSWORD).access

    def reject(_: int) -> tuple[int, str]:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {access}")
        response = client.post(f"/api/v1/moderation/flags/{flagged.pk}/reject", format="json")
        return response.status_code, response.json().get("message", "")

    results = run_concurrently(reject, 16)

    assert sorted(results) == [(200, "Already rejected; nothing changed.")] * 15 + [
        (200, "Update rejected.")
    ]
    assert ScoreUpdate.objects.filter(status=ScoreStatus.REVERSAL).count() == 1
    assert all_time_score(cheater) == 0


def test_concurrent_bans_record_one(cheater: User, make_moderator: Callable[..., User]) -> None:
    moderators = [make_moderator() for _ in range(4)]

    outcomes = run_concurrently(
        lambda n: user_ban(user_id=cheater.pk, moderator=moderators[n % 4], reason="bot"), 16
    )

    assert sum(outcome.changed for outcome in outcomes) == 1
    assert ModerationDecision.objects.filter(action="BAN").count() == 1
    assert not User.objects.get(pk=cheater.pk).is_active
