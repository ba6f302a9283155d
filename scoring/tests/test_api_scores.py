"""POST /api/v1/scores/update: signed claims backed by one-time action tokens.

Every refusal is checked for its status and code, and for changing nothing: no audit row, no
totals, and the token still unspent where it was valid.
"""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from rest_framework import status

from accounts.tests.helpers import UtcTimestamp, assert_error, assert_invalid
from scoring.models import ActionToken, ScoreStatus, ScoreTotal, ScoreUpdate
from scoring.periods import ALL_TIME_START, DEFAULT_BOARD, Period, period_starts
from scoring.tests.fixtures import (
    ACTION_TYPE_FORMAT,
    SIGNATURE_REQUIRED,
    TIMESTAMP_REQUIRED,
    UUID_REQUIRED,
    GameServerKey,
    Player,
    now_iso,
)

pytestmark = pytest.mark.django_db

INVALID_TOKEN: dict[str, Any] = {
    "status_code": status.HTTP_403_FORBIDDEN,
    "code": "INVALID_ACTION_TOKEN",
    "message": "Action token is invalid or already used.",
}


def assert_nothing_scored(*, token_spent: bool = False) -> None:
    assert not ScoreUpdate.objects.exists()
    assert not ScoreTotal.objects.exists()
    if not token_spent:
        assert not ActionToken.objects.filter(used_at__isnull=False).exists()
        assert not ActionToken.objects.filter(is_valid=False).exists()


@pytest.fixture
def earned(player: Player, game_server: GameServerKey) -> tuple[str, dict[str, Any]]:
    """An action token for WIN_GAME (100 points) and the valid score update body for it."""
    token, proof = player.complete(game_server)
    return token, player.update_body(action_id=proof["actionId"])


# --- the happy path -------------------------------------------------------------------------


def test_a_valid_update_adds_the_points_and_answers_as_the_spec_shows(
    player: Player, earned: tuple[str, dict[str, Any]]
) -> None:
    token, body = earned

    response = player.submit(token, body, HTTP_USER_AGENT="GameClient/1.2")

    assert response.status_code == status.HTTP_200_OK, response.content
    assert response.json() == {
        "success": True,
        "data": {
            "userId": str(player.user.pk),
            "newScore": 100,
            "scoreIncrement": 100,
            "rank": 1,
            "previousRank": None,
            "timestamp": UtcTimestamp(),
        },
        "message": "Score updated successfully",
    }
    update = ScoreUpdate.objects.get()
    assert (update.user, update.action_type, str(update.action_id)) == (
        player.user,
        "WIN_GAME",
        body["actionId"],
    )
    assert (update.previous_score, update.new_score, update.score_increment) == (0, 100, 100)
    assert (update.previous_rank, update.new_rank) == (None, 1)
    assert update.status == ScoreStatus.COUNTED
    assert update.verified
    assert update.ip_address == "127.0.0.1"
    assert update.user_agent == "GameClient/1.2"
    assert update.action_token == ActionToken.objects.get()
    assert update.action_token.used_at is not None
    assert not update.action_token.is_valid


def test_the_total_of_every_period_bucket_grows_in_the_same_transaction(
    player: Player, earned: tuple[str, dict[str, Any]]
) -> None:
    token, body = earned

    player.submit(token, body)

    starts = period_starts(timezone.now())
    totals = {
        (row.period, row.period_start): row.score
        for row in ScoreTotal.objects.filter(user=player.user, board=DEFAULT_BOARD)
    }
    assert totals == {
        (Period.ALL_TIME, ALL_TIME_START): 100,
        (Period.DAILY, starts[Period.DAILY]): 100,
        (Period.WEEKLY, starts[Period.WEEKLY]): 100,
        (Period.MONTHLY, starts[Period.MONTHLY]): 100,
    }


def test_ranks_before_and_after_follow_competition_ranking(
    make_player: Any, game_server: GameServerKey
) -> None:
    leader, second, climber = make_player(), make_player(), make_player()
    for _ in range(3):
        leader.score_action(game_server)  # 300
    second.score_action(game_server, action_type="COMPLETE_QUEST")  # 50
    climber.score_action(game_server, action_type="ACHIEVEMENT_UNLOCK")  # 25, rank 3

    response = climber.score_action(game_server, action_type="ACHIEVEMENT_UNLOCK")  # 50

    data = response.json()["data"]
    assert (data["newScore"], data["previousRank"], data["rank"]) == (50, 3, 2)
    assert ScoreUpdate.objects.filter(user=climber.user).first().new_rank == 2  # type: ignore[union-attr]


def test_a_hidden_player_scores_but_has_no_rank(
    player: Player, earned: tuple[str, dict[str, Any]]
) -> None:
    player.user.hide_from_leaderboards = True
    player.user.save()
    token, body = earned

    data = player.submit(token, body).json()["data"]

    assert (data["newScore"], data["rank"], data["previousRank"]) == (100, None, None)


def test_hidden_players_do_not_count_towards_anyones_rank(
    player: Player, make_player: Any, game_server: GameServerKey
) -> None:
    hidden = make_player()
    hidden.score_action(game_server)
    hidden.score_action(game_server)
    hidden.user.hide_from_leaderboards = True
    hidden.user.save()

    data = player.score_action(game_server).json()["data"]

    assert data["rank"] == 1


# --- action token abuse ---------------------------------------------------------------------


def test_a_token_works_only_once(player: Player, earned: tuple[str, dict[str, Any]]) -> None:
    token, body = earned
    assert player.submit(token, body).status_code == status.HTTP_200_OK

    response = player.submit(token, body)

    assert_error(
        response,
        status_code=status.HTTP_403_FORBIDDEN,
        code="INVALID_ACTION_TOKEN",
        message="Action token was already used.",
    )
    assert ScoreUpdate.objects.count() == 1
    assert ScoreTotal.objects.get(period=Period.ALL_TIME).score == 100


def test_another_players_token_is_refused(
    player: Player, make_player: Any, game_server: GameServerKey
) -> None:
    token, proof = player.complete(game_server)
    thief = make_player()

    response = thief.submit(token, thief.update_body(action_id=proof["actionId"]))

    assert_error(response, **INVALID_TOKEN)
    assert_nothing_scored()


def test_an_expired_token_is_refused(player: Player, earned: tuple[str, dict[str, Any]]) -> None:
    token, body = earned
    ActionToken.objects.update(expires_at=timezone.now() - timedelta(seconds=1))

    response = player.submit(token, body)

    assert_error(
        response,
        status_code=status.HTTP_403_FORBIDDEN,
        code="INVALID_ACTION_TOKEN",
        message="Action token has expired.",
    )
    assert_nothing_scored()


def test_an_unknown_token_is_refused(player: Player, earned: tuple[str, dict[str, Any]]) -> None:
    _, body = earned

    assert_error(player.submit("made-up-token", body), **INVALID_TOKEN)
    assert_nothing_scored()


def test_a_missing_token_header_is_refused(
    player: Player, earned: tuple[str, dict[str, Any]]
) -> None:
    _, body = earned

    response = player.submit(None, body)

    assert_error(
        response,
        status_code=status.HTTP_403_FORBIDDEN,
        code="INVALID_ACTION_TOKEN",
        message="The X-Action-Token header is required.",
    )
    assert_nothing_scored()


MISMATCH: dict[str, Any] = {
    "status_code": status.HTTP_403_FORBIDDEN,
    "code": "INVALID_ACTION_TOKEN",
    "message": "Action token was issued for another action, type or score increment.",
}


def test_a_token_for_another_action_id_is_refused(
    player: Player, game_server: GameServerKey
) -> None:
    token, _ = player.complete(game_server)
    _, other_proof = player.complete(game_server)

    response = player.submit(token, player.update_body(action_id=other_proof["actionId"]))

    assert_error(response, **MISMATCH)
    assert_nothing_scored()


def test_a_token_for_another_action_type_is_refused(
    player: Player, earned: tuple[str, dict[str, Any]]
) -> None:
    token, body = earned

    response = player.submit(
        token,
        player.update_body(
            action_id=body["actionId"], action_type="COMPLETE_QUEST", score_increment=100
        ),
    )

    assert_error(response, **MISMATCH)
    assert_nothing_scored()


def test_a_signed_but_inflated_increment_is_refused(
    player: Player, earned: tuple[str, dict[str, Any]]
) -> None:
    token, body = earned

    response = player.submit(
        token, player.update_body(action_id=body["actionId"], score_increment=1000)
    )

    assert_error(response, **MISMATCH)
    assert_nothing_scored()


# --- signatures and identity ----------------------------------------------------------------

BAD_SIGNATURE: dict[str, Any] = {
    "status_code": status.HTTP_403_FORBIDDEN,
    "code": "FORBIDDEN",
    "message": "clientSignature does not match the signed fields.",
}


def test_an_increment_tampered_after_signing_is_refused(
    player: Player, earned: tuple[str, dict[str, Any]]
) -> None:
    token, body = earned
    body["scoreIncrement"] = 1000

    assert_error(player.submit(token, body), **BAD_SIGNATURE)
    assert_nothing_scored()


@pytest.mark.parametrize("signature", ["0" * 64, "f" * 64], ids=["zeroes", "wrong"])
def test_a_wrong_signature_is_refused(
    player: Player, earned: tuple[str, dict[str, Any]], signature: str
) -> None:
    token, body = earned
    body["clientSignature"] = signature

    assert_error(player.submit(token, body), **BAD_SIGNATURE)
    assert_nothing_scored()


def test_a_signature_made_with_another_players_key_is_refused(
    player: Player, make_player: Any, earned: tuple[str, dict[str, Any]]
) -> None:
    token, body = earned
    other = make_player()

    forged = player.update_body(action_id=body["actionId"], signing_key=other.signing_key)

    assert_error(player.submit(token, forged), **BAD_SIGNATURE)
    assert_nothing_scored()


def test_a_signature_from_before_a_key_rotation_is_refused(
    player: Player, earned: tuple[str, dict[str, Any]]
) -> None:
    from accounts.services import user_rotate_signing_key

    token, body = earned
    user_rotate_signing_key(user=player.user)

    assert_error(player.submit(token, body), **BAD_SIGNATURE)
    assert_nothing_scored()


def test_a_missing_signature_is_refused(player: Player, earned: tuple[str, dict[str, Any]]) -> None:
    token, body = earned
    del body["clientSignature"]

    assert_invalid(player.submit(token, body), {"clientSignature": ["This field is required."]})
    assert_nothing_scored()


def test_the_user_id_of_another_player_is_forbidden(
    player: Player, make_player: Any, earned: tuple[str, dict[str, Any]]
) -> None:
    token, body = earned
    other = make_player()
    claim = player.update_body(action_id=body["actionId"], user_id=str(other.user.pk))

    response = player.submit(token, claim)

    assert_error(
        response,
        status_code=status.HTTP_403_FORBIDDEN,
        code="FORBIDDEN",
        message="userId must be the authenticated user.",
    )
    assert_nothing_scored()


def test_a_score_update_needs_a_jwt(player: Player, earned: tuple[str, dict[str, Any]]) -> None:
    token, body = earned
    player.client.credentials()

    response = player.submit(token, body)

    assert response.status_code == status.HTTP_401_UNAUTHORIZED
    assert response.json()["error"]["code"] == "UNAUTHORIZED"
    assert_nothing_scored()


@pytest.mark.parametrize(
    ("offset", "message"),
    [
        (-301, "The timestamp is older than 300 seconds."),
        (120, "The timestamp is in the future."),
    ],
)
def test_a_timestamp_outside_the_window_is_refused(
    player: Player, earned: tuple[str, dict[str, Any]], offset: int, message: str
) -> None:
    token, body = earned
    claim = player.update_body(action_id=body["actionId"], timestamp=now_iso(offset))

    assert_invalid(player.submit(token, claim), {"timestamp": [message]})
    assert_nothing_scored()


# --- strict input ---------------------------------------------------------------------------

INTEGER_REQUIRED = ["A JSON integer is required."]


@pytest.mark.parametrize(
    ("increment", "details"),
    [
        pytest.param("100", {"scoreIncrement": INTEGER_REQUIRED}, id="string"),
        pytest.param(1.5, {"scoreIncrement": INTEGER_REQUIRED}, id="float"),
        pytest.param(100.0, {"scoreIncrement": INTEGER_REQUIRED}, id="integral-float"),
        pytest.param(True, {"scoreIncrement": INTEGER_REQUIRED}, id="boolean"),
        pytest.param(None, {"scoreIncrement": ["This field may not be null."]}, id="null"),
        pytest.param(
            10**30,
            {"scoreIncrement": ["Ensure this value is less than or equal to 1000."]},
            id="huge",
        ),
        pytest.param(
            0, {"scoreIncrement": ["Ensure this value is greater than or equal to 1."]}, id="zero"
        ),
        pytest.param(
            -100,
            {"scoreIncrement": ["Ensure this value is greater than or equal to 1."]},
            id="negative",
        ),
    ],
)
def test_a_score_increment_that_is_not_a_small_positive_integer_is_refused(
    player: Player, earned: tuple[str, dict[str, Any]], increment: Any, details: Any
) -> None:
    token, body = earned
    claim = player.update_body(action_id=body["actionId"], score_increment=increment)

    assert_invalid(player.submit(token, claim), details)
    assert_nothing_scored()


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_non_finite_numbers_are_refused(
    player: Player, earned: tuple[str, dict[str, Any]], literal: str
) -> None:
    token, body = earned
    raw = json.dumps({**body, "scoreIncrement": "<literal>"}).replace('"<literal>"', literal)

    response = player.client.post(
        "/api/v1/scores/update",
        raw,
        content_type="application/json",
        HTTP_X_ACTION_TOKEN=token,
    )

    assert response.status_code == status.HTTP_400_BAD_REQUEST
    assert response.json()["error"]["code"] == "INVALID_INPUT"
    assert_nothing_scored()


@pytest.mark.parametrize(
    ("change", "details"),
    [
        ({"bonus": 5}, {"bonus": ["Unknown field."]}),
        ({"userId": "me"}, {"userId": UUID_REQUIRED}),
        ({"actionId": 7}, {"actionId": UUID_REQUIRED}),
        ({"actionType": "FLY"}, {"actionType": ["Unknown or inactive action type."]}),
        ({"actionType": "win_game"}, {"actionType": ACTION_TYPE_FORMAT}),
        ({"timestamp": "yesterday"}, {"timestamp": TIMESTAMP_REQUIRED}),
        ({"clientSignature": "abc"}, {"clientSignature": SIGNATURE_REQUIRED}),
        ({"clientSignature": "g" * 64}, {"clientSignature": SIGNATURE_REQUIRED}),
    ],
)  # fmt: skip
def test_malformed_fields_are_refused(
    player: Player, earned: tuple[str, dict[str, Any]], change: dict[str, Any], details: Any
) -> None:
    token, body = earned
    body.update(change)

    assert_invalid(player.submit(token, body), details)
    assert_nothing_scored()


def test_a_body_that_is_not_an_object_is_refused(
    player: Player, earned: tuple[str, dict[str, Any]]
) -> None:
    token, _ = earned

    response = player.submit(token, [1, 2, 3])

    assert response.status_code == status.HTTP_400_BAD_REQUEST
    assert_nothing_scored()


def test_an_unknown_route_under_scores_is_the_envelope(player: Player) -> None:
    response = player.client.post("/api/v1/scores/updat", {}, format="json")

    assert response.status_code == status.HTTP_404_NOT_FOUND
    assert response.json()["error"]["code"] == "NOT_FOUND"


def test_the_action_id_is_not_reused_for_a_second_token(
    player: Player, earned: tuple[str, dict[str, Any]], game_server: GameServerKey
) -> None:
    token, body = earned
    player.submit(token, body)

    response = player.client.post(
        "/api/v1/actions/complete",
        player.proof_body(game_server, action_id=body["actionId"]),
        format="json",
    )

    assert response.status_code == status.HTTP_409_CONFLICT
    assert ScoreUpdate.objects.count() == 1


def test_uuids_are_compared_as_uuids_but_signed_as_sent(
    player: Player, game_server: GameServerKey
) -> None:
    action_id = str(uuid.uuid4()).upper()
    token, _ = player.complete(game_server, action_id=action_id)
    claim = player.update_body(action_id=action_id, user_id=str(player.user.pk).upper())

    response = player.submit(token, claim)

    assert response.status_code == status.HTTP_200_OK, response.content


# --- Idempotency-Key ------------------------------------------------------------------------


def test_a_retry_with_the_same_idempotency_key_replays_the_first_answer(
    player: Player, earned: tuple[str, dict[str, Any]]
) -> None:
    token, body = earned
    first = player.submit(token, body, HTTP_IDEMPOTENCY_KEY="retry-1")

    retry = player.submit(token, body, HTTP_IDEMPOTENCY_KEY="retry-1")

    assert retry.status_code == status.HTTP_200_OK
    assert retry.json() == first.json()
    assert retry["Idempotent-Replayed"] == "true"
    assert ScoreUpdate.objects.count() == 1
    assert ScoreTotal.objects.get(period=Period.ALL_TIME).score == 100


def test_the_same_idempotency_key_with_another_body_is_refused(
    player: Player, earned: tuple[str, dict[str, Any]], game_server: GameServerKey
) -> None:
    token, body = earned
    player.submit(token, body, HTTP_IDEMPOTENCY_KEY="retry-1")
    other_token, other_proof = player.complete(game_server)

    response = player.submit(
        other_token,
        player.update_body(action_id=other_proof["actionId"]),
        HTTP_IDEMPOTENCY_KEY="retry-1",
    )

    assert response.status_code == status.HTTP_422_UNPROCESSABLE_ENTITY
    assert response.json()["error"]["code"] == "IDEMPOTENCY_KEY_REUSED"
    assert ScoreUpdate.objects.count() == 1
    assert ActionToken.objects.get(action_id=other_proof["actionId"]).used_at is None
