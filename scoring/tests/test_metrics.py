"""Score pipeline metrics: why action tokens could not be spent, and moderators' decisions."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.models import User
from scoreboard.tests.metric_samples import RegistryDelta
from scoring.models import ActionToken, ScoreStatus
from scoring.moderation import score_update_approve, score_update_reject, user_ban
from scoring.services import hash_action_token
from scoring.tests.fixtures import GameServerKey, Player
from scoring.tests.moderation_fixtures import TOO_FAST, record_update

pytestmark = pytest.mark.django_db

REJECTED = "scoreboard_action_tokens_rejected_total"
REASONS = ("missing", "unknown", "used", "expired", "mismatch")
DECISIONS = "scoreboard_moderation_decisions_total"


def test_each_refused_action_token_is_counted_by_why(
    player: Player, make_player: Callable[..., Player], game_server: GameServerKey
) -> None:
    rival = make_player(username="rival", email="rival@example.com")
    rejected = RegistryDelta(*((REJECTED, {"reason": reason}) for reason in REASONS))
    spent, spent_body = player.complete(game_server)
    assert (
        player.submit(spent, player.update_body(action_id=spent_body["actionId"])).status_code
        == 200
    )
    expiring, expiring_body = player.complete(game_server)
    ActionToken.objects.filter(token_hash=hash_action_token(expiring)).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    other, _ = player.complete(game_server)
    rivals, rivals_body = rival.complete(game_server)

    answers = [
        player.submit(None, player.update_body(action_id=str(uuid.uuid4()))),
        player.submit("made-up", player.update_body(action_id=str(uuid.uuid4()))),
        player.submit(rivals, player.update_body(action_id=rivals_body["actionId"])),
        player.submit(spent, player.update_body(action_id=spent_body["actionId"])),
        player.submit(expiring, player.update_body(action_id=expiring_body["actionId"])),
        player.submit(other, player.update_body(action_id=str(uuid.uuid4()))),
    ]

    assert [answer.json()["error"]["code"] for answer in answers] == ["INVALID_ACTION_TOKEN"] * 6
    # Another player's token is an unknown one, as the client is told.
    assert rejected() == [1, 2, 1, 1, 1]


def test_each_decision_that_changes_something_is_counted_once(
    cheater: User, moderator: User
) -> None:
    held = record_update(cheater, 100, status=ScoreStatus.HELD, reasons=[TOO_FAST])
    counted = record_update(cheater, 50)
    decisions = RegistryDelta(
        *((DECISIONS, {"action": action}) for action in ("APPROVE", "REJECT", "BAN"))
    )

    for _ in range(2):  # the second time, each finds its decision already taken
        score_update_approve(update_id=held.pk, moderator=moderator)
        score_update_reject(update_id=counted.pk, moderator=moderator)
        user_ban(user_id=cheater.pk, moderator=moderator)

    assert decisions() == [1, 1, 1]
