from __future__ import annotations

import logging
import re

import pytest
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db


def test_every_response_carries_a_generated_request_id(api_client: APIClient) -> None:
    first = api_client.get("/healthz")["X-Request-ID"]
    second = api_client.get("/healthz")["X-Request-ID"]

    assert re.fullmatch(r"[0-9a-f]{32}", first)
    assert first != second


def test_a_sane_client_request_id_is_echoed_in_header_and_error_body(
    api_client: APIClient,
) -> None:
    response = api_client.get("/api/v1/users/me", HTTP_X_REQUEST_ID="client-42.a:b")

    assert response["X-Request-ID"] == "client-42.a:b"
    assert response.json()["error"]["requestId"] == "client-42.a:b"


@pytest.mark.parametrize(
    "unsafe", ["has space", "a" * 129, "trailing-newline\n", "new\nline", "<script>", ""]
)
def test_an_unsafe_client_request_id_is_replaced(api_client: APIClient, unsafe: str) -> None:
    response = api_client.get("/healthz", HTTP_X_REQUEST_ID=unsafe)

    assert re.fullmatch(r"[0-9a-f]{32}", response["X-Request-ID"])


def test_the_request_id_appears_in_the_logs(
    api_client: APIClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="scoreboard.requests"):
        api_client.get("/api/v1/users/me", HTTP_X_REQUEST_ID="trace-me-1")

    records = [r for r in caplog.records if r.name == "scoreboard.requests"]
    assert [r.request_id for r in records] == ["trace-me-1"]  # type: ignore[attr-defined]
    assert "GET /api/v1/users/me 401" in records[0].getMessage()
