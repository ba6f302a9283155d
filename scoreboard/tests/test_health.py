from __future__ import annotations

from collections.abc import Callable

import pytest
from rest_framework import status
from rest_framework.test import APIClient

from scoreboard.tests.http import request

DEAD_PORT = 1  # nothing listens on tcpmux: connections are refused at once


@pytest.mark.django_db
def test_healthz_answers_without_touching_dependencies(
    api_client: APIClient, django_assert_num_queries: Callable[..., object]
) -> None:
    with django_assert_num_queries(0):  # type: ignore[attr-defined]
        response = api_client.get("/healthz")

    assert response.status_code == status.HTTP_200_OK
    assert response.json() == {"success": True, "data": {"status": "ok"}}


@pytest.mark.django_db
def test_probes_answer_head_for_load_balancers(api_client: APIClient) -> None:
    assert api_client.head("/healthz").status_code == status.HTTP_200_OK
    assert api_client.post("/healthz").status_code == status.HTTP_405_METHOD_NOT_ALLOWED


@pytest.mark.django_db(transaction=True)
def test_readyz_is_ready_when_every_dependency_answers(api_client: APIClient) -> None:
    response = api_client.get("/readyz")

    assert response.status_code == status.HTTP_200_OK
    assert response.json()["data"] == {
        "status": "ready",
        "checks": {"database": "ok", "cache": "ok", "channelLayer": "ok"},
    }


def test_a_dead_database_makes_readyz_and_writes_a_clean_503(
    start_server: Callable[..., str],
) -> None:
    base_url = start_server(DATABASE_URL=f"postgres://postgres@127.0.0.1:{DEAD_PORT}/scoreboard")

    ready_status, _, ready = request("GET", f"{base_url}/readyz")
    token_status, headers, token = request(
        "POST", f"{base_url}/api/v1/auth/token", {"username": "a", "password": "b"}
    )

    assert ready_status == status.HTTP_503_SERVICE_UNAVAILABLE
    assert ready["error"]["code"] == "SERVICE_UNAVAILABLE"
    checks = ready["error"]["details"]["checks"]
    # The pool may still be retrying its connections when the check's time is up.
    assert checks.pop("database") in {"unavailable", "timeout"}
    assert checks == {"cache": "ok", "channelLayer": "ok"}
    assert ready["error"]["message"] == "Not ready: database unavailable."
    assert token_status == status.HTTP_503_SERVICE_UNAVAILABLE
    assert token["error"]["code"] == "DATABASE_ERROR"
    assert headers["Retry-After"] == str(token["error"]["retryAfter"])


def test_a_dead_redis_makes_readyz_and_throttled_writes_a_clean_503(
    start_server: Callable[..., str],
) -> None:
    base_url = start_server(REDIS_URL=f"redis://127.0.0.1:{DEAD_PORT}/0")

    ready_status, _, ready = request("GET", f"{base_url}/readyz")
    token_status, _, token = request(
        "POST", f"{base_url}/api/v1/auth/token", {"username": "a", "password": "b"}
    )

    assert ready_status == status.HTTP_503_SERVICE_UNAVAILABLE
    assert ready["error"]["details"]["checks"] == {
        "database": "ok",
        "cache": "unavailable",
        "channelLayer": "unavailable",
    }
    assert token_status == status.HTTP_503_SERVICE_UNAVAILABLE
    assert token["error"]["code"] == "REDIS_ERROR"


@pytest.mark.redis
def test_readyz_with_real_redis_checks_cache_and_channel_layer(
    start_server: Callable[..., str], redis_url: str
) -> None:
    base_url = start_server(REDIS_URL=redis_url)

    ready_status, _, ready = request("GET", f"{base_url}/readyz")

    assert ready_status == status.HTTP_200_OK
    assert ready["data"]["checks"] == {"database": "ok", "cache": "ok", "channelLayer": "ok"}
