"""Every error an API client can meet leaves through the one envelope (DESIGN.md §4)."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from django.db import OperationalError
from django.test import Client
from rest_framework import status
from rest_framework.exceptions import Throttled
from rest_framework.test import APIClient

from scoreboard.errors import api_exception_handler
from scoreboard.request_context import bind_request_id, unbind_request_id
from scoreboard.tests.crash_urls import LEAKED_DETAIL

pytestmark = pytest.mark.django_db


def assert_envelope(response: Any, http_status: int, code: str) -> dict[str, Any]:
    assert response.status_code == http_status
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert body["success"] is False
    error = body["error"]
    assert error["code"] == code
    assert isinstance(error["message"], str)
    assert error["message"]
    assert error["timestamp"].endswith("Z")
    assert error["requestId"] == response["X-Request-ID"]
    assert set(error) <= {"code", "message", "details", "retryAfter", "timestamp", "requestId"}
    return error


def test_unknown_api_route_is_a_404_envelope(api_client: APIClient) -> None:
    assert_envelope(api_client.get("/api/v1/no-such-thing"), status.HTTP_404_NOT_FOUND, "NOT_FOUND")


def test_unknown_route_outside_the_api_keeps_djangos_page() -> None:
    response = Client().get("/admin/no-such-thing/")

    assert response.status_code in (status.HTTP_302_FOUND, status.HTTP_404_NOT_FOUND)
    assert not response["Content-Type"].startswith("application/json")


def test_wrong_method_is_a_405_envelope_with_allow(api_client: APIClient) -> None:
    response = api_client.get("/api/v1/auth/register")

    assert_envelope(response, status.HTTP_405_METHOD_NOT_ALLOWED, "METHOD_NOT_ALLOWED")
    assert "POST" in response["Allow"]


def test_malformed_json_is_a_400_envelope(api_client: APIClient) -> None:
    response = api_client.post(
        "/api/v1/auth/register", data=b'{"username": ', content_type="application/json"
    )

    error = assert_envelope(response, status.HTTP_400_BAD_REQUEST, "INVALID_INPUT")
    assert error["message"].startswith("Malformed request body")


@pytest.mark.parametrize("constant", [b"NaN", b"Infinity", b"-Infinity"])
def test_non_standard_json_numbers_are_refused(api_client: APIClient, constant: bytes) -> None:
    body = b'{"username": "abc", "email": "a@b.co", "password": ' + constant + b"}"

    response = api_client.post("/api/v1/auth/register", data=body, content_type="application/json")

    assert_envelope(response, status.HTTP_400_BAD_REQUEST, "INVALID_INPUT")


def test_non_json_body_is_a_415_envelope(api_client: APIClient) -> None:
    response = api_client.post(
        "/api/v1/auth/register", data="username=x", content_type="application/x-www-form-urlencoded"
    )

    assert_envelope(response, status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, "UNSUPPORTED_MEDIA_TYPE")


def test_body_over_64_kib_is_a_413_envelope(api_client: APIClient) -> None:
    body = b'{"username": "' + b"a" * (64 * 1024) + b'"}'

    response = api_client.post("/api/v1/auth/register", data=body, content_type="application/json")

    assert_envelope(response, status.HTTP_413_REQUEST_ENTITY_TOO_LARGE, "PAYLOAD_TOO_LARGE")


def test_body_at_the_limit_is_read(api_client: APIClient) -> None:
    padding = 64 * 1024 - len(b'{"username": ""}')
    body = b'{"username": "' + b"a" * padding + b'"}'

    response = api_client.post("/api/v1/auth/register", data=body, content_type="application/json")

    error = assert_envelope(response, status.HTTP_400_BAD_REQUEST, "INVALID_INPUT")
    assert "username" in error["details"]


def test_bad_host_on_the_api_is_a_400_envelope() -> None:
    response = Client(HTTP_HOST="evil.example").get("/api/v1/users/me")

    assert_envelope(response, status.HTTP_400_BAD_REQUEST, "INVALID_INPUT")


@pytest.mark.urls("scoreboard.tests.crash_urls")
@pytest.mark.parametrize("debug", [False, True])
@pytest.mark.parametrize("path", ["/api/v1/crash", "/api/v1/plain-crash"])
def test_unexpected_exception_is_a_500_envelope_that_leaks_nothing(
    path: str, debug: bool, settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    settings.DEBUG = debug
    client = Client(raise_request_exception=False)

    with caplog.at_level(logging.ERROR):
        response = client.get(path)

    error = assert_envelope(response, status.HTTP_500_INTERNAL_SERVER_ERROR, "INTERNAL_ERROR")
    assert LEAKED_DETAIL not in response.content.decode()
    assert "Traceback" not in response.content.decode()
    assert "details" not in error
    assert LEAKED_DETAIL in caplog.text


@pytest.mark.urls("scoreboard.tests.crash_urls")
def test_permission_denied_is_a_403_envelope() -> None:
    response = Client().get("/api/v1/forbidden")

    error = assert_envelope(response, status.HTTP_403_FORBIDDEN, "FORBIDDEN")
    assert error["message"] == "Moderators only."


def test_throttled_carries_retry_after_in_body_and_header() -> None:
    token = bind_request_id("req-1")
    try:
        response = api_exception_handler(Throttled(wait=12.2), {})
    finally:
        unbind_request_id(token)

    assert response.status_code == status.HTTP_429_TOO_MANY_REQUESTS
    assert response.data["error"]["code"] == "RATE_LIMIT_EXCEEDED"
    assert response.data["error"]["retryAfter"] == 13
    assert response.data["error"]["requestId"] == "req-1"
    assert response["Retry-After"] == "13"


def test_a_database_outage_is_a_clean_503() -> None:
    response = api_exception_handler(OperationalError("connection refused"), {})

    assert response.status_code == status.HTTP_503_SERVICE_UNAVAILABLE
    assert response.data["error"]["code"] == "DATABASE_ERROR"
    assert "connection refused" not in response.data["error"]["message"]
    assert response["Retry-After"] == str(response.data["error"]["retryAfter"])
