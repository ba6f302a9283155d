"""Races on the write path, against the real database (SQLite file or PostgreSQL).

Each thread has its own database connection, so these are real concurrent transactions.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any, TypeVar

import pytest
from django.db import connection
from django.utils import timezone

from scoreboard.config import Rate
from scoring.exceptions import InvalidActionToken
from scoring.models import Action, ActionToken, ScoreTotal, ScoreUpdate
from scoring.periods import Period
from scoring.services import hash_action_token, score_update_apply
from scoring.tests.fixtures import GameServerKey, Player

pytestmark = pytest.mark.django_db(transaction=True)

T = TypeVar("T")


def run_concurrently(task: Callable[[int], T], count: int, *, workers: int = 16) -> list[T]:
    """Run task(0..count-1) on `workers` threads released together by a barrier."""
    barrier = threading.Barrier(min(workers, count))

    def run(index: int) -> T:
        try:
            if index < workers:
                barrier.wait(timeout=30)
            return task(index)
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(run, range(count)))


@pytest.fixture
def generous_rate_limits(settings: Any) -> None:
    """These tests are about races, not rate limits."""
    settings.SCOREBOARD_RATE_SCORE_UPDATES = Rate(1000, 60)
    settings.SCOREBOARD_RATE_API_PER_IP = Rate(1000, 60)


def test_of_sixteen_concurrent_submissions_of_one_token_exactly_one_wins(
    player: Player, game_server: GameServerKey, generous_rate_limits: None
) -> None:
    token, proof = player.complete(game_server)
    body = player.update_body(action_id=proof["actionId"])
    headers = dict(player.client._credentials)  # type: ignore[attr-defined]

    def submit(_: int) -> tuple[int, str | None]:
        from rest_framework.test import APIClient

        client = APIClient()
        client.credentials(**headers)
        response = client.post(
            "/api/v1/scores/update", body, format="json", HTTP_X_ACTION_TOKEN=token
        )
        error = response.json().get("error")
        return response.status_code, error["code"] if error else None

    results = run_concurrently(submit, 16)

    assert sorted(results) == [(200, None)] + [(403, "INVALID_ACTION_TOKEN")] * 15
    assert ScoreUpdate.objects.count() == 1
    assert ScoreTotal.objects.get(period=Period.ALL_TIME).score == 100


@pytest.fixture
def anomaly_rules_silent(settings: Any) -> None:
    """A hundred updates in a second trip every anomaly rule; these tests are about races
    (test_anomaly_pipeline.py races the rules themselves)."""
    settings.SCOREBOARD_ANOMALY_FLAG_THRESHOLD = 10**9
    settings.SCOREBOARD_ANOMALY_HOLD_THRESHOLD = 10**9


def test_a_hundred_concurrent_updates_of_one_player_all_count_exactly(
    player: Player, game_server: GameServerKey, anomaly_rules_silent: None
) -> None:
    action = Action.objects.get(action_type="WIN_GAME")
    tokens = [f"token-{index}" for index in range(100)]
    action_ids = [uuid.uuid4() for _ in tokens]
    now = timezone.now()
    ActionToken.objects.bulk_create(
        ActionToken(
            user=player.user,
            action_type=action,
            action_id=action_id,
            game_server=game_server.server,
            token_hash=hash_action_token(token),
            points=action.base_points,
            completed_at=now,
            expires_at=now + timedelta(minutes=5),
        )
        for token, action_id in zip(tokens, action_ids, strict=True)
    )

    def apply(index: int) -> int:
        return score_update_apply(
            user=player.user,
            action_token=tokens[index],
            action_type="WIN_GAME",
            action_id=action_ids[index],
            score_increment=100,
            client_timestamp=None,
            ip_address="203.0.113.7",
            user_agent="race",
        ).new_score

    new_scores = run_concurrently(apply, 100)

    # Every update saw a distinct total: no two read the same "before" and overwrote.
    assert sorted(new_scores) == [100 * n for n in range(1, 101)]
    totals = ScoreTotal.objects.filter(user=player.user)
    assert {total.period: total.score for total in totals} == {
        Period.ALL_TIME: 10_000,
        Period.DAILY: 10_000,
        Period.WEEKLY: 10_000,
        Period.MONTHLY: 10_000,
    }
    audit = sorted(ScoreUpdate.objects.values_list("previous_score", "new_score"))
    assert audit == [(100 * n, 100 * (n + 1)) for n in range(100)]
    assert not ActionToken.objects.filter(used_at__isnull=True).exists()


def test_concurrent_reuse_at_the_service_layer_spends_the_token_once(
    player: Player, game_server: GameServerKey
) -> None:
    token, proof = player.complete(game_server)

    def apply(_: int) -> str:
        try:
            score_update_apply(
                user=player.user,
                action_token=token,
                action_type="WIN_GAME",
                action_id=uuid.UUID(proof["actionId"]),
                score_increment=100,
                client_timestamp=None,
                ip_address=None,
                user_agent="",
            )
        except InvalidActionToken:
            return "refused"
        return "scored"

    outcomes = run_concurrently(apply, 32)

    assert outcomes.count("scored") == 1
    assert outcomes.count("refused") == 31
    assert ScoreTotal.objects.get(period=Period.ALL_TIME).score == 100


def _post_as(player: Player, url: str, body: dict[str, Any]) -> tuple[int, str | None]:
    from rest_framework.test import APIClient

    client = APIClient()
    client.credentials(**player.client._credentials)  # type: ignore[attr-defined]
    response = client.post(url, body, format="json")
    error = response.json().get("error")
    return response.status_code, error["code"] if error else None


def test_one_proof_sent_sixteen_times_at_once_issues_one_token(
    player: Player, game_server: GameServerKey, generous_rate_limits: None
) -> None:
    body = player.proof_body(game_server)

    results = run_concurrently(lambda _: _post_as(player, "/api/v1/actions/complete", body), 16)

    assert sorted(results) == [(201, None)] + [(409, "ACTION_ALREADY_COMPLETED")] * 15
    assert ActionToken.objects.count() == 1


def test_a_daily_cap_holds_under_concurrent_completions(
    player: Player, game_server: GameServerKey, generous_rate_limits: None
) -> None:
    bodies = [player.proof_body(game_server, action_type="DAILY_LOGIN") for _ in range(8)]

    results = run_concurrently(lambda n: _post_as(player, "/api/v1/actions/complete", bodies[n]), 8)

    assert sorted(results) == [(201, None)] + [(429, "RATE_LIMIT_EXCEEDED")] * 7
    assert ActionToken.objects.count() == 1
