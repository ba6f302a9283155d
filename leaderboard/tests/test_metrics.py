"""Index metrics: writes lost after commit, and what reconcile repairs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import redis
from django.utils import timezone

from accounts.models import User
from leaderboard.backends.base import BoardKey
from leaderboard.backends.redis import member_for, set_key
from leaderboard.services import (
    index_user_resync,
    leaderboard_rebuild,
    leaderboard_reconcile,
    retained_buckets,
)
from scoreboard.tests.metric_samples import RegistryDelta
from scoring.models import ScoreTotal
from scoring.periods import Period
from scoring.tests.fixtures import GameServerKey, Player

pytestmark = pytest.mark.django_db

FAILURES = "scoreboard_leaderboard_index_write_failures_total"
REPAIRS = "scoreboard_leaderboard_reconcile_repairs_total"


def test_index_writes_lost_after_commit_are_counted(
    player: Player,
    game_server: GameServerKey,
    request: pytest.FixtureRequest,
    django_capture_on_commit_callbacks: Any,
) -> None:
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        assert player.score_action(game_server).status_code == 200
    request.getfixturevalue("dead_redis")
    failures = RegistryDelta(
        (FAILURES, {"operation": "score"}), (FAILURES, {"operation": "resync"})
    )

    for callback in callbacks:
        callback()
    index_user_resync(user_id=player.user.pk)

    assert failures() == [1, 1]


def test_reconcile_counts_each_entry_it_rewrites_or_removes_and_each_rebuild(
    make_user: Callable[..., User], redis_index: redis.Redis
) -> None:
    wrong, stray, *_ = players = [make_user(country="US") for _ in range(3)]
    now = timezone.now()
    ScoreTotal.objects.bulk_create(
        ScoreTotal(
            board="global",
            period=period,
            period_start=start,
            user=player,
            score=10 + n,
            reached_at=now,
        )
        for n, player in enumerate(players)
        for period, start in retained_buckets(now)
    )
    leaderboard_rebuild()
    total = ScoreTotal.objects.get(user=wrong, period=Period.ALL_TIME)
    redis_index.zadd(set_key(BoardKey()), {member_for(wrong.pk, total.reached_at): 999})
    User.objects.filter(pk=stray.pk).update(is_active=False)  # behind the index's back
    repairs = RegistryDelta(
        (REPAIRS, {"kind": "entry_rewritten"}),
        (REPAIRS, {"kind": "stray_removed"}),
        (REPAIRS, {"kind": "index_rebuilt"}),
    )

    report = leaderboard_reconcile()
    redis_index.flushdb()
    leaderboard_reconcile()

    assert report.repaired == 1
    assert report.removed == 2 * len(retained_buckets(now))  # the board and its country board
    assert repairs() == [report.repaired, report.removed, 1]
