"""Score pipeline fixtures (a catalog, a game server, players who can sign), shared by every
app's tests through the root conftest."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from rest_framework.test import APIClient

from accounts.models import User
from accounts.selectors import user_signing_key
from accounts.services import token_pair_for_credentials
from conftest import TEST_PASSWORD
from scoring.anticheat import hmac_sha256_hex
from scoring.models import ActionToken, GameServer
from scoring.services import actions_load_defaults, game_server_create, hash_action_token

# Moderation's fixtures, for every app's tests too.
pytest_plugins = ("scoring.tests.moderation_fixtures",)

COMPLETE_URL = "/api/v1/actions/complete"
UPDATE_URL = "/api/v1/scores/update"
HISTORY_URL = "/api/v1/users/me/history"

UUID_REQUIRED = ["A UUID string (8-4-4-4-12 hex digits) is required."]
TIMESTAMP_REQUIRED = [
    "An ISO 8601 date-time with seconds and a UTC offset is required, e.g. 2025-10-30T10:30:00Z."
]
SIGNATURE_REQUIRED = ["A hex HMAC-SHA256 (64 hex digits) is required."]
ACTION_TYPE_FORMAT = ["Upper-case letters, digits and underscores."]


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def now_iso(offset_seconds: float = 0) -> str:
    return iso(datetime.now(UTC) + timedelta(seconds=offset_seconds))


@dataclass
class GameServerKey:
    server: GameServer
    secret: str

    @property
    def key_id(self) -> str:
        return self.server.key_id


@dataclass
class Player:
    """A registered user with an authenticated API client and their signing key."""

    user: User
    client: APIClient
    signing_key: str

    def proof_body(
        self,
        game_server: GameServerKey,
        *,
        action_type: str = "WIN_GAME",
        action_id: str | None = None,
        timestamp: str | None = None,
        signed_user_id: str | None = None,
    ) -> dict[str, Any]:
        action_id = action_id or str(uuid.uuid4())
        timestamp = timestamp or now_iso()
        message = f"{signed_user_id or self.user.pk}:{action_type}:{action_id}:{timestamp}"
        return {
            "actionId": action_id,
            "actionType": action_type,
            "timestamp": timestamp,
            "proof": {
                "keyId": game_server.key_id,
                "signature": hmac_sha256_hex(game_server.secret, message),
            },
        }

    def complete(self, game_server: GameServerKey, **proof: Any) -> tuple[str, dict[str, Any]]:
        """Complete an action; returns the action token and the body that earned it, with the
        points the token is worth as its `scoreIncrement`."""
        body = self.proof_body(game_server, **proof)
        response = self.client.post(COMPLETE_URL, body, format="json")
        assert response.status_code == 201, response.content
        data = response.json()["data"]
        return data["actionToken"], {**body, "scoreIncrement": data["scoreIncrement"]}

    def update_body(
        self,
        *,
        action_id: str,
        action_type: str = "WIN_GAME",
        score_increment: Any = 100,
        timestamp: str | None = None,
        user_id: str | None = None,
        signing_key: str | None = None,
    ) -> dict[str, Any]:
        user_id = user_id or str(self.user.pk)
        timestamp = timestamp or now_iso()
        message = f"{user_id}{action_id}{timestamp}{score_increment}"
        return {
            "userId": user_id,
            "actionType": action_type,
            "actionId": action_id,
            "scoreIncrement": score_increment,
            "timestamp": timestamp,
            "clientSignature": hmac_sha256_hex(signing_key or self.signing_key, message),
        }

    def submit(self, token: str | None, body: Any, **headers: str) -> Any:
        if token is not None:
            headers["HTTP_X_ACTION_TOKEN"] = token
        return self.client.post(UPDATE_URL, body, format="json", **headers)  # type: ignore[arg-type]

    def score_action(self, game_server: GameServerKey, **proof: Any) -> Any:
        """Complete an action and submit its score; returns the score update response."""
        token, proof_body = self.complete(game_server, **proof)
        return self.submit(
            token,
            self.update_body(
                action_id=proof_body["actionId"],
                action_type=proof_body["actionType"],
                score_increment=proof_body["scoreIncrement"],
            ),
        )


@pytest.fixture
def catalog(db: None) -> None:
    actions_load_defaults()


@pytest.fixture
def game_server(db: None) -> GameServerKey:
    server, secret = game_server_create(name="arena-eu-1")
    return GameServerKey(server=server, secret=secret)


@pytest.fixture
def make_player(make_user: Callable[..., User], catalog: None) -> Callable[..., Player]:
    def make(**fields: Any) -> Player:
        user = make_user(**fields)
        pair = token_pair_for_credentials(username=user.username, password=TEST_PASSWORD)
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {pair.access}")
        return Player(user=user, client=client, signing_key=user_signing_key(user))

    return make


@pytest.fixture
def player(make_player: Callable[..., Player]) -> Player:
    return make_player(username="ProGamer123", email="pro@example.com", country="US")


def stored_action_token(
    user: User, game_server: GameServerKey, *, expires_at: datetime, **fields: Any
) -> ActionToken:
    """An action token row as `actions/complete` stores it (a WIN_GAME worth 100, completed
    five minutes before it expires), for tests about what is kept of tokens."""
    return ActionToken.objects.create(
        user=user,
        action_type_id="WIN_GAME",
        action_id=uuid.uuid4(),
        game_server=game_server.server,
        token_hash=hash_action_token(uuid.uuid4().hex),
        points=100,
        completed_at=expires_at - timedelta(minutes=5),
        expires_at=expires_at,
        **fields,
    )
