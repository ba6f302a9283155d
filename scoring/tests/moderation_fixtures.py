"""Moderation fixtures: the Moderators group, moderators, and score updates written as the
write path leaves them (COUNTED, FLAGGED, HELD), without going through the anomaly rules,
which have tests of their own. Loaded through scoring/tests/fixtures.py."""

from __future__ import annotations

import importlib
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from django.apps import apps as django_apps
from django.db.models import Q, Sum
from django.utils import timezone

from accounts.models import Role, User
from scoring.models import ScoreStatus, ScoreTotal, ScoreUpdate
from scoring.periods import DEFAULT_BOARD, Period, period_end, period_starts
from scoring.services import score_totals_shift
from scoring.signals import ScoreCommitted, score_committed

# What a reason looks like in `risk_reasons` (scoring.anomaly's Reason.as_json()).
IP_HOP = {"code": "IP_HOP", "weight": 40, "observed": 2, "limit": 1, "detail": "2 addresses"}
TOO_FAST = {"code": "TOO_FAST", "weight": 60, "observed": 3.5, "limit": 60, "detail": "3.5 s"}

MODERATORS_PERMISSIONS = {
    "scoring.view_reviewitem",
    "scoring.change_reviewitem",
    "scoring.ban_player",
    "scoring.view_scoreupdate",
    "scoring.view_moderationdecision",
}


def ensure_moderators_group() -> None:
    """Create the group exactly as its migration does. A transactional test's flush empties
    the auth tables (post_migrate restores permissions, not groups), so later tests call this
    to get the migrated state back."""
    migration = importlib.import_module("scoring.migrations.0003_moderators_group")
    migration.create_group(django_apps, None)


def record_update(
    user: User,
    points: int,
    *,
    status: str = ScoreStatus.COUNTED,
    at: datetime | None = None,
    reasons: list[dict[str, Any]] | None = None,
    action_type: str = "WIN_GAME",
    ip_address: str | None = "203.0.113.7",
) -> ScoreUpdate:
    """A score update as score_update_apply writes it: COUNTED and FLAGGED add their points
    to the buckets of `at`; HELD counts nothing (previous score == new score)."""
    at = at or timezone.now()
    before = all_time_score(user)
    counted = status in (ScoreStatus.COUNTED, ScoreStatus.FLAGGED)
    if counted:
        score_totals_shift(
            user_id=user.pk, board=DEFAULT_BOARD, starts=period_starts(at), points=points, now=at
        )
    return ScoreUpdate.objects.create(
        user=user,
        action_type=action_type,
        action_id=uuid.uuid4(),
        score_increment=points,
        previous_score=before,
        new_score=before + points if counted else before,
        ip_address=ip_address,
        user_agent="pytest",
        verified=True,
        status=status,
        risk_reasons=reasons if reasons is not None else [],
        created_at=at,
    )


def all_time_score(user: User) -> int:
    return int(
        ScoreTotal.objects.filter(user=user, period=Period.ALL_TIME)
        .values_list("score", flat=True)
        .first()
        or 0
    )


def totals_of(user: User) -> dict[tuple[str, Any], int]:
    """Every total of the user above zero, by (period, period start)."""
    return {
        (total.period, total.period_start): total.score
        for total in ScoreTotal.objects.filter(user=user, score__gt=0)
    }


def versions_of(user: User) -> dict[tuple[str, Any], int]:
    return {
        (total.period, total.period_start): total.version
        for total in ScoreTotal.objects.filter(user=user)
    }


def ledger_totals(user: User) -> dict[tuple[str, Any], int]:
    """What the audit log says the totals must be: every update that counts (COUNTED or
    FLAGGED) in the buckets it was made in. Rejected updates and their reversals cancel out,
    so neither appears."""
    counting = ScoreUpdate.objects.filter(
        user=user, status__in=[ScoreStatus.COUNTED, ScoreStatus.FLAGGED]
    )
    expected: dict[tuple[str, Any], int] = {}
    for period, start in {
        (period, start)
        for update in counting
        for period, start in period_starts(update.created_at).items()
    }:
        end = period_end(period, start)
        in_bucket = Q(created_at__gte=_midnight(start)) if period != Period.ALL_TIME else Q()
        if end is not None:
            in_bucket &= Q(created_at__lt=end)
        expected[(period, start)] = int(
            counting.filter(in_bucket).aggregate(points=Sum("score_increment"))["points"] or 0
        )
    return {bucket: score for bucket, score in expected.items() if score > 0}


def _midnight(day: Any) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


@pytest.fixture
def moderators_group(db: None) -> None:
    ensure_moderators_group()


@pytest.fixture
def make_moderator(make_user: Callable[..., User], moderators_group: None) -> Callable[..., User]:
    def make(**fields: Any) -> User:
        fields.setdefault("role", Role.MODERATOR)
        return make_user(**fields)

    return make


@pytest.fixture
def moderator(make_moderator: Callable[..., User]) -> User:
    return make_moderator(username="mod_alice", email="mod.alice@example.com")


@pytest.fixture
def cheater(make_user: Callable[..., User]) -> User:
    return make_user(username="speedy", email="speedy@example.com", country="GB")


@pytest.fixture
def committed_events() -> Iterator[list[ScoreCommitted]]:
    """Every `score_committed` event sent while the test runs."""
    received: list[ScoreCommitted] = []

    def receiver(sender: Any, event: ScoreCommitted, **kwargs: Any) -> None:
        received.append(event)

    score_committed.connect(receiver, dispatch_uid="tests.moderation.events")
    yield received
    score_committed.disconnect(dispatch_uid="tests.moderation.events")
