"""Browser game clients on other origins (CORS_ALLOWED_ORIGINS, django-cors-headers)."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from scoring.tests.fixtures import Player

pytestmark = pytest.mark.django_db

GAME = "https://game.example"


@pytest.fixture(autouse=True)
def _game_origin_allowed(settings: Any) -> None:
    settings.CORS_ALLOWED_ORIGINS = [GAME]


def preflight(client: APIClient, origin: str, headers: str) -> Any:
    return client.options(
        "/api/v1/scores/update",
        HTTP_ORIGIN=origin,
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST",
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS=headers,
    )


def test_a_listed_origin_may_send_the_score_pipeline_headers(api_client: APIClient) -> None:
    response = preflight(api_client, GAME, "authorization, content-type, x-action-token")

    assert response.status_code == 200
    assert response["Access-Control-Allow-Origin"] == GAME
    allowed = {h.strip() for h in response["Access-Control-Allow-Headers"].split(",")}
    assert {"authorization", "content-type", "x-action-token", "idempotency-key"} <= allowed
    assert "Access-Control-Allow-Credentials" not in response


def test_an_unlisted_origin_gets_no_cors_headers(api_client: APIClient) -> None:
    response = preflight(api_client, "https://evil.example", "authorization")

    assert "Access-Control-Allow-Origin" not in response


def test_preflights_do_not_count_against_the_rate_limit(
    api_client: APIClient, settings: Any
) -> None:
    settings.SCOREBOARD_RATE_API_PER_IP = type(settings.SCOREBOARD_RATE_API_PER_IP)(2, 60)

    statuses = [preflight(api_client, GAME, "authorization").status_code for _ in range(5)]

    assert statuses == [200] * 5
    assert api_client.get("/api/v1/leaderboard/top", HTTP_ORIGIN=GAME).status_code != 429


def test_errors_reach_the_browser_with_their_rate_limit_headers(player: Player) -> None:
    response = player.client.get("/api/v1/leaderboard/top?limit=0", HTTP_ORIGIN=GAME)

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "INVALID_INPUT"
    assert response["Access-Control-Allow-Origin"] == GAME
    exposed = {h.strip() for h in response["Access-Control-Expose-Headers"].split(",")}
    assert {"X-Request-ID", "X-RateLimit-Remaining", "Retry-After"} <= exposed


def test_pages_outside_the_api_are_not_shared_cross_origin(api_client: APIClient) -> None:
    response = api_client.get("/healthz", HTTP_ORIGIN=GAME)

    assert "Access-Control-Allow-Origin" not in response
