"""`score_committed` is sent after commit, with everything receivers need, and never for a
rolled-back update."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import transaction
from django.utils import timezone

from scoring.models import ScoreUpdate
from scoring.periods import ALL_TIME_START, Period, period_starts
from scoring.signals import PeriodTotal, ScoreCommitted, score_committed
from scoring.tests.fixtures import GameServerKey, Player

pytestmark = pytest.mark.django_db


@pytest.fixture
def events() -> Iterator[list[ScoreCommitted]]:
    received: list[ScoreCommitted] = []

    def receiver(sender: Any, event: ScoreCommitted, **kwargs: Any) -> None:
        received.append(event)

    score_committed.connect(receiver)
    yield received
    score_committed.disconnect(receiver)


def test_a_committed_update_is_announced_once_with_its_totals_and_ranks(
    player: Player,
    game_server: GameServerKey,
    events: list[ScoreCommitted],
    django_capture_on_commit_callbacks: Any,
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        player.score_action(game_server)

    update = ScoreUpdate.objects.get()
    starts = period_starts(update.created_at)
    assert events == [
        ScoreCommitted(
            score_update_id=update.pk,
            user_id=player.user.pk,
            username="ProGamer123",
            country="US",
            avatar="",
            visible=True,
            board="global",
            status="COUNTED",
            score_increment=100,
            totals={
                Period.ALL_TIME: PeriodTotal(ALL_TIME_START, 100, update.created_at, 1),
                Period.DAILY: PeriodTotal(starts[Period.DAILY], 100, update.created_at, 1),
                Period.WEEKLY: PeriodTotal(starts[Period.WEEKLY], 100, update.created_at, 1),
                Period.MONTHLY: PeriodTotal(starts[Period.MONTHLY], 100, update.created_at, 1),
            },
            previous_rank=None,
            new_rank=1,
            committed_at=update.created_at,
        )
    ]


def test_nothing_is_announced_before_the_commit(
    player: Player,
    game_server: GameServerKey,
    events: list[ScoreCommitted],
    django_capture_on_commit_callbacks: Any,
) -> None:
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        player.score_action(game_server)

    assert events == []
    assert len(callbacks) == 1


def test_a_rolled_back_update_is_never_announced(
    player: Player, game_server: GameServerKey, events: list[ScoreCommitted]
) -> None:
    from scoring.services import score_update_apply

    token, proof = player.complete(game_server)

    def score_then_fail() -> None:
        with transaction.atomic():
            score_update_apply(
                user=player.user,
                action_token=token,
                action_type="WIN_GAME",
                action_id=uuid.UUID(proof["actionId"]),
                score_increment=100,
                client_timestamp=timezone.now(),
                ip_address=None,
                user_agent="",
            )
            raise RuntimeError("the surrounding work failed")

    with pytest.raises(RuntimeError):
        score_then_fail()

    assert events == []
    assert not ScoreUpdate.objects.exists()


def test_a_failing_receiver_does_not_stop_the_others_nor_the_request(
    player: Player,
    game_server: GameServerKey,
    events: list[ScoreCommitted],
    django_capture_on_commit_callbacks: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(sender: Any, **kwargs: Any) -> None:
        raise ValueError("index unavailable")

    score_committed.connect(broken)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            response = player.score_action(game_server)
    finally:
        score_committed.disconnect(broken)

    assert response.status_code == 200
    assert len(events) == 1
    assert "score_committed receiver" in caplog.text
