"""POST /api/v1/actions/complete: game-server proofs become one-time action tokens."""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

import pytest
from rest_framework import status

from accounts.tests.helpers import assert_error, assert_invalid
from scoring.models import Action, ActionToken
from scoring.tests.fixtures import (
    ACTION_TYPE_FORMAT,
    COMPLETE_URL,
    SIGNATURE_REQUIRED,
    TIMESTAMP_REQUIRED,
    UUID_REQUIRED,
    GameServerKey,
    Player,
    now_iso,
)

pytestmark = pytest.mark.django_db

INVALID_PROOF: dict[str, Any] = {
    "status_code": status.HTTP_403_FORBIDDEN,
    "code": "FORBIDDEN",
    "message": "The game-server proof is not valid.",
}


def post(player: Player, body: Any) -> Any:
    return player.client.post(COMPLETE_URL, body, format="json")


def test_a_valid_proof_issues_a_one_time_token_worth_the_catalog_points(
    player: Player, game_server: GameServerKey
) -> None:
    body = player.proof_body(game_server, action_type="COMPLETE_QUEST")

    response = post(player, body)

    assert response.status_code == status.HTTP_201_CREATED, response.content
    data = response.json()["data"]
    assert set(data) == {"actionToken", "expiresIn", "scoreIncrement"}
    assert data["expiresIn"] == 300
    assert data["scoreIncrement"] == 50
    assert len(data["actionToken"]) >= 43  # 256 bits, URL-safe base64
    token = ActionToken.objects.get()
    assert str(token.action_id) == body["actionId"]
    assert token.user == player.user
    assert token.points == 50
    assert token.used_at is None
    assert token.is_valid
    assert token.token_hash == hashlib.sha256(data["actionToken"].encode()).hexdigest()
    assert (token.expires_at - token.created_at).total_seconds() == pytest.approx(300, abs=1)


def test_the_token_itself_is_never_stored(player: Player, game_server: GameServerKey) -> None:
    token, _ = player.complete(game_server)

    stored = ActionToken.objects.values()[0]

    assert token not in {str(value) for value in stored.values()}


def test_each_completion_gets_a_different_token(player: Player, game_server: GameServerKey) -> None:
    first, _ = player.complete(game_server)
    second, _ = player.complete(game_server)

    assert first != second


def test_a_replayed_proof_is_refused_as_already_completed(
    player: Player, game_server: GameServerKey
) -> None:
    body = player.proof_body(game_server)
    assert post(player, body).status_code == status.HTTP_201_CREATED

    response = post(player, body)

    assert_error(
        response,
        status_code=status.HTTP_409_CONFLICT,
        code="ACTION_ALREADY_COMPLETED",
        message="This action was already completed.",
    )
    assert ActionToken.objects.count() == 1


def test_an_action_id_completed_by_another_player_is_refused(
    player: Player, make_player: Any, game_server: GameServerKey
) -> None:
    _, body = player.complete(game_server)
    rival = make_player()

    response = post(rival, rival.proof_body(game_server, action_id=body["actionId"]))

    assert response.status_code == status.HTTP_409_CONFLICT
    assert ActionToken.objects.get().user == player.user


def test_a_proof_signed_for_another_user_is_refused(
    player: Player, make_player: Any, game_server: GameServerKey
) -> None:
    rival = make_player()
    body = player.proof_body(game_server, signed_user_id=str(rival.user.pk))

    response = post(player, body)

    assert_error(response, **INVALID_PROOF)
    assert not ActionToken.objects.exists()


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda body: body.update(actionType="COMPLETE_QUEST"), id="action-type"),
        pytest.param(lambda body: body.update(actionId=str(uuid.uuid4())), id="action-id"),
        pytest.param(lambda body: body.update(timestamp=now_iso(-1)), id="timestamp"),
        pytest.param(lambda body: body["proof"].update(signature="0" * 64), id="signature-zeroes"),
    ],
)
def test_a_proof_whose_signed_fields_were_changed_is_refused(
    player: Player, game_server: GameServerKey, tamper: Any
) -> None:
    body = player.proof_body(game_server)
    tamper(body)

    assert_error(post(player, body), **INVALID_PROOF)
    assert not ActionToken.objects.exists()


def test_an_upper_case_signature_is_the_same_signature(
    player: Player, game_server: GameServerKey
) -> None:
    body = player.proof_body(game_server)
    body["proof"]["signature"] = body["proof"]["signature"].upper()

    assert post(player, body).status_code == status.HTTP_201_CREATED


def test_a_proof_from_an_unknown_game_server_is_refused(
    player: Player, game_server: GameServerKey
) -> None:
    body = player.proof_body(game_server)
    body["proof"]["keyId"] = "gs_unknown"

    assert_error(post(player, body), **INVALID_PROOF)
    assert not ActionToken.objects.exists()


def test_a_proof_from_a_disabled_game_server_is_refused(
    player: Player, game_server: GameServerKey
) -> None:
    game_server.server.is_active = False
    game_server.server.save()

    assert_error(post(player, player.proof_body(game_server)), **INVALID_PROOF)
    assert not ActionToken.objects.exists()


def test_a_proof_signed_with_another_servers_secret_is_refused(
    player: Player, game_server: GameServerKey
) -> None:
    from scoring.services import game_server_create

    _, other_secret = game_server_create(name="arena-us-1")
    forged = GameServerKey(server=game_server.server, secret=other_secret)

    assert_error(post(player, player.proof_body(forged)), **INVALID_PROOF)


@pytest.mark.parametrize(
    ("offset", "message"),
    [
        (-61, "timestamp: The timestamp is older than 60 seconds."),
        (-3600, "timestamp: The timestamp is older than 60 seconds."),
        (60, "timestamp: The timestamp is in the future."),
    ],
)
def test_a_proof_outside_the_time_window_is_refused(
    player: Player, game_server: GameServerKey, offset: int, message: str
) -> None:
    response = post(player, player.proof_body(game_server, timestamp=now_iso(offset)))

    assert_error(
        response,
        status_code=status.HTTP_400_BAD_REQUEST,
        code="INVALID_INPUT",
        message=message,
        details={"timestamp": [message.removeprefix("timestamp: ")]},
    )
    assert not ActionToken.objects.exists()


def test_a_proof_a_little_ahead_of_our_clock_is_accepted(
    player: Player, game_server: GameServerKey
) -> None:
    response = post(player, player.proof_body(game_server, timestamp=now_iso(3)))

    assert response.status_code == status.HTTP_201_CREATED


def test_an_unknown_action_type_is_not_found(player: Player, game_server: GameServerKey) -> None:
    response = post(player, player.proof_body(game_server, action_type="DANCE_OFF"))

    assert_error(
        response,
        status_code=status.HTTP_404_NOT_FOUND,
        code="ACTION_NOT_FOUND",
        message="No active action of type DANCE_OFF.",
    )


def test_an_inactive_action_type_is_not_found(player: Player, game_server: GameServerKey) -> None:
    Action.objects.filter(action_type="WIN_GAME").update(is_active=False)

    response = post(player, player.proof_body(game_server))

    assert response.status_code == status.HTTP_404_NOT_FOUND
    assert response.json()["error"]["code"] == "ACTION_NOT_FOUND"
    assert not ActionToken.objects.exists()


def test_a_daily_cap_stops_further_completions_until_the_next_utc_day(
    player: Player, game_server: GameServerKey
) -> None:
    player.complete(game_server, action_type="DAILY_LOGIN")

    response = post(player, player.proof_body(game_server, action_type="DAILY_LOGIN"))

    assert response.status_code == status.HTTP_429_TOO_MANY_REQUESTS
    error = response.json()["error"]
    assert error["code"] == "RATE_LIMIT_EXCEEDED"
    assert error["message"] == "DAILY_LOGIN can be completed 1 times a day."
    assert 0 < error["retryAfter"] <= 86400
    assert response["Retry-After"] == str(error["retryAfter"])
    assert ActionToken.objects.count() == 1


def test_the_daily_cap_is_per_player(
    player: Player, make_player: Any, game_server: GameServerKey
) -> None:
    player.complete(game_server, action_type="DAILY_LOGIN")

    rival = make_player()
    response = post(rival, rival.proof_body(game_server, action_type="DAILY_LOGIN"))

    assert response.status_code == status.HTTP_201_CREATED


def test_completing_an_action_needs_a_jwt(player: Player, game_server: GameServerKey) -> None:
    player.client.credentials()

    response = post(player, player.proof_body(game_server))

    assert response.status_code == status.HTTP_401_UNAUTHORIZED
    assert not ActionToken.objects.exists()


def test_the_game_server_records_when_it_was_last_used(
    player: Player, game_server: GameServerKey
) -> None:
    player.complete(game_server)

    game_server.server.refresh_from_db()
    assert game_server.server.last_used_at is not None


@pytest.mark.parametrize(
    ("change", "details"),
    [
        ({"actionId": "not-a-uuid"}, {"actionId": UUID_REQUIRED}),
        ({"actionId": 12345}, {"actionId": UUID_REQUIRED}),
        ({"actionType": "win game"}, {"actionType": ACTION_TYPE_FORMAT}),
        ({"timestamp": "2025-10-30"}, {"timestamp": TIMESTAMP_REQUIRED}),
        ({"timestamp": "2025-10-30T10:30:00"}, {"timestamp": TIMESTAMP_REQUIRED}),
        ({"timestamp": 1761820200}, {"timestamp": TIMESTAMP_REQUIRED}),
        ({"extra": 1}, {"extra": ["Unknown field."]}),
    ],
)  # fmt: skip
def test_malformed_bodies_are_refused_and_change_nothing(
    player: Player, game_server: GameServerKey, change: dict[str, Any], details: Any
) -> None:
    body = player.proof_body(game_server)
    body.update(change)

    response = post(player, body)

    assert_invalid(response, details)
    assert not ActionToken.objects.exists()


@pytest.mark.parametrize(
    ("proof", "message", "details"),
    [
        (
            {"keyId": "gs_x", "signature": "xyz"},
            "proof.signature: A hex HMAC-SHA256 (64 hex digits) is required.",
            {"signature": SIGNATURE_REQUIRED},
        ),
        (
            {"keyId": "gs_x", "signature": "a" * 64, "nonce": 1},
            "proof.nonce: Unknown field.",
            {"nonce": ["Unknown field."]},
        ),
        (
            {"keyId": "gs\x00", "signature": "a" * 64},
            "proof.keyId: Null characters are not allowed.",
            {"keyId": ["Null characters are not allowed."]},
        ),
        (
            "signature",
            "proof: Invalid data. Expected a dictionary, but got str.",
            {"nonFieldErrors": ["Invalid data. Expected a dictionary, but got str."]},
        ),
    ],
)
def test_a_malformed_proof_object_is_refused(
    player: Player, game_server: GameServerKey, proof: Any, message: str, details: Any
) -> None:
    body = player.proof_body(game_server)
    body["proof"] = proof

    response = post(player, body)

    assert_error(
        response,
        status_code=status.HTTP_400_BAD_REQUEST,
        code="INVALID_INPUT",
        message=message,
        details={"proof": details},
    )
    assert not ActionToken.objects.exists()


def test_a_missing_field_is_named(player: Player, game_server: GameServerKey) -> None:
    body = player.proof_body(game_server)
    del body["proof"]

    assert_invalid(post(player, body), {"proof": ["This field is required."]})
