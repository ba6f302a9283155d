"""The whole score flow over real HTTP against a served instance (uvicorn, DEBUG off), on the
database and Redis this test run uses: register, log in, complete an action with a game
server's proof, submit the signed score, read the history."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from django.conf import settings
from django.db import connection

from scoring.anticheat import hmac_sha256_hex
from scoring.services import actions_load_defaults, game_server_create
from scoring.tests.fixtures import now_iso

pytestmark = pytest.mark.django_db(transaction=True)


def database_url() -> str:
    """The URL of the database this test run created, for the server process to share."""
    db = connection.settings_dict
    if db["ENGINE"] == "django.db.backends.sqlite3":
        return f"sqlite:///{db['NAME']}"
    return f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


def call(base_url: str, method: str, path: str, body: Any = None, **headers: str) -> Any:
    request = urllib.request.Request(  # noqa: S310
        base_url + path,
        data=json.dumps(body).encode() if body is not None else None,
        method=method,
        headers={"Content-Type": "application/json", **headers},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_a_player_scores_through_the_served_api(start_server: Callable[..., str]) -> None:
    actions_load_defaults()
    server, secret = game_server_create(name="arena-eu-1")
    environment = {
        "DATABASE_URL": database_url(),
        "SECRET_KEY": settings.SECRET_KEY,
        "SCOREBOARD_ENCRYPTION_KEY": settings.SCOREBOARD_ENCRYPTION_KEY,
    }
    if os.environ.get("REDIS_URL"):
        environment["REDIS_URL"] = os.environ["REDIS_URL"]
    base_url = start_server(**environment)
    password = "correct horse battery staple"

    status, body = call(
        base_url,
        "POST",
        "/api/v1/auth/register",
        {"username": "ProGamer123", "email": "pro@example.com", "password": password},
    )
    assert status == 201, body
    user_id = body["data"]["id"]
    status, body = call(
        base_url, "POST", "/api/v1/auth/token", {"username": "ProGamer123", "password": password}
    )
    assert status == 200, body
    bearer = {"Authorization": f"Bearer {body['data']['accessToken']}"}
    signing_key = body["data"]["signingKey"]

    action_id, timestamp = str(uuid.uuid4()), now_iso()
    proof = hmac_sha256_hex(secret, f"{user_id}:COMPLETE_QUEST:{action_id}:{timestamp}")
    status, body = call(
        base_url,
        "POST",
        "/api/v1/actions/complete",
        {
            "actionId": action_id,
            "actionType": "COMPLETE_QUEST",
            "timestamp": timestamp,
            "proof": {"keyId": server.key_id, "signature": proof},
        },
        **bearer,
    )
    assert status == 201, body
    assert body["data"]["scoreIncrement"] == 50
    action_token = body["data"]["actionToken"]

    update = {
        "userId": user_id,
        "actionType": "COMPLETE_QUEST",
        "actionId": action_id,
        "scoreIncrement": 50,
        "timestamp": timestamp,
        "clientSignature": hmac_sha256_hex(signing_key, f"{user_id}{action_id}{timestamp}50"),
    }
    status, body = call(
        base_url,
        "POST",
        "/api/v1/scores/update",
        update,
        **bearer,
        **{"X-Action-Token": action_token},
    )
    assert status == 200, body
    assert body["data"]["newScore"] == 50
    assert body["data"]["rank"] == 1

    status, body = call(
        base_url,
        "POST",
        "/api/v1/scores/update",
        update,
        **bearer,
        **{"X-Action-Token": action_token},
    )
    assert (status, body["error"]["code"]) == (403, "INVALID_ACTION_TOKEN")

    status, body = call(base_url, "GET", "/api/v1/users/me/history", **bearer)
    assert status == 200
    assert [item["newScore"] for item in body["data"]["items"]] == [50]
