"""`snapshot_leaderboards` archives each closed period once, from the database."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from accounts.models import User
from leaderboard.models import LeaderboardSnapshot
from leaderboard.services import last_closed_bucket
from scoring.models import ScoreTotal
from scoring.periods import Period, period_start

pytestmark = pytest.mark.django_db


def run(*args: str) -> str:
    out = StringIO()
    call_command("snapshot_leaderboards", *args, stdout=out)
    return out.getvalue()


@pytest.mark.parametrize(
    ("period", "now", "expected"),
    [
        (Period.DAILY, datetime(2026, 11, 27, 0, 0, 30, tzinfo=UTC), date(2026, 11, 26)),
        (Period.WEEKLY, datetime(2026, 11, 27, 9, tzinfo=UTC), date(2026, 11, 16)),
        (Period.MONTHLY, datetime(2026, 1, 1, 0, 1, tzinfo=UTC), date(2025, 12, 1)),
    ],
)
def test_the_last_closed_bucket_is_the_one_before_the_current(
    period: str, now: datetime, expected: date
) -> None:
    assert last_closed_bucket(period, now) == expected


def test_each_closed_period_is_archived_once(make_user: Callable[..., User]) -> None:
    now = timezone.now()
    player = make_user()
    for period in (Period.DAILY, Period.WEEKLY, Period.MONTHLY):
        ScoreTotal.objects.create(
            board="global",
            period=period,
            period_start=last_closed_bucket(period, now),
            user=player,
            score=40,
            reached_at=now,
        )

    first = run()
    second = run()

    assert first.count(": archived (1 of 1 players)") == 3
    assert second.count("already archived") == 3
    assert LeaderboardSnapshot.objects.count() == 3
    daily = LeaderboardSnapshot.objects.get(period=Period.DAILY)
    assert daily.entries == [
        {
            "rank": 1,
            "userId": str(player.pk),
            "username": player.username,
            "score": 40,
            "avatar": "",
            "country": "",
            "lastUpdated": now.isoformat().replace("+00:00", "Z"),
        }
    ]


def test_a_period_that_has_not_ended_is_not_archived() -> None:
    output = run("--date", timezone.now().date().isoformat())

    assert output.count("skipped") == 3
    assert not LeaderboardSnapshot.objects.exists()


def test_an_older_period_can_be_archived_by_date(make_user: Callable[..., User]) -> None:
    day = date(2026, 3, 10)
    moment = datetime(2026, 3, 10, tzinfo=UTC)
    ScoreTotal.objects.create(
        board="global",
        period=Period.WEEKLY,
        period_start=period_start(Period.WEEKLY, moment),
        user=make_user(),
        score=5,
        reached_at=moment,
    )

    run("--date", day.isoformat())

    weekly = LeaderboardSnapshot.objects.get(period=Period.WEEKLY)
    assert (weekly.period_start, weekly.total_users) == (date(2026, 3, 9), 1)
