"""Structured logs: the request line's fields, security events, and the two formats."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from rest_framework.test import APIClient

from conftest import TEST_PASSWORD
from scoreboard.logformat import JsonFormatter, TextFormatter
from scoreboard.tests.test_startup import SECRETS, run_with_settings
from scoring.tests.fixtures import GameServerKey, Player

pytestmark = pytest.mark.django_db


def records_of(caplog: pytest.LogCaptureFixture, logger: str) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.name == logger]


def test_the_request_line_names_route_user_status_and_duration(
    player: Player, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="scoreboard.requests"):
        player.client.get("/api/v1/users/me", HTTP_X_REQUEST_ID="line-1", REMOTE_ADDR="10.1.2.3")

    [line] = records_of(caplog, "scoreboard.requests")
    fields = line.__dict__
    assert {key: fields[key] for key in ("request_id", "method", "path", "route", "status")} == {
        "request_id": "line-1",
        "method": "GET",
        "path": "/api/v1/users/me",
        "route": "api/v1/users/me",
        "status": 200,
    }
    assert fields["user_id"] == str(player.user.pk)
    assert fields["client_ip"] == "10.1.2.3"
    assert isinstance(fields["duration_ms"], float)
    assert fields["duration_ms"] >= 0


def test_routes_are_patterns_and_anonymous_requests_have_no_user(
    api_client: APIClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="scoreboard.requests"):
        api_client.get("/api/v1/moderation/flags/3f1c2a9e-0000-4000-8000-000000000000/nope")
        api_client.get("/api/v1/users/me")

    unmatched, anonymous = records_of(caplog, "scoreboard.requests")
    assert (unmatched.route, unmatched.status) == ("unmatched", 404)  # type: ignore[attr-defined]
    assert (anonymous.route, anonymous.user_id) == ("api/v1/users/me", None)  # type: ignore[attr-defined]


def test_a_request_refused_before_routing_still_names_its_route(
    api_client: APIClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="scoreboard.requests"):
        api_client.post(
            "/api/v1/auth/register",
            data=b"{}",
            content_type="application/json",
            CONTENT_LENGTH=str(10 * 1024 * 1024),
        )

    [line] = records_of(caplog, "scoreboard.requests")
    assert (line.route, line.status) == ("api/v1/auth/register", 413)  # type: ignore[attr-defined]


def security_events(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str]]:
    return [
        (record.levelname, record.event)  # type: ignore[attr-defined]
        for record in records_of(caplog, "scoreboard.security")
    ]


def test_a_forged_client_signature_and_a_replayed_action_token_are_security_events(
    player: Player, game_server: GameServerKey, caplog: pytest.LogCaptureFixture
) -> None:
    token, proof = player.complete(game_server)
    body = player.update_body(action_id=proof["actionId"], score_increment=proof["scoreIncrement"])
    forged = {**body, "clientSignature": "0" * 64}

    with caplog.at_level(logging.INFO, logger="scoreboard.security"):
        assert player.submit(token, forged).status_code == 403
        assert player.submit(token, body).status_code == 200
        assert player.submit(token, body).status_code == 403

    assert security_events(caplog) == [
        ("WARNING", "client_signature_invalid"),
        ("WARNING", "action_token_reuse"),
    ]
    reuse = records_of(caplog, "scoreboard.security")[1]
    assert reuse.user_id == str(player.user.pk)  # type: ignore[attr-defined]
    assert reuse.route == "api/v1/scores/update"  # type: ignore[attr-defined]
    assert reuse.code == "INVALID_ACTION_TOKEN"  # type: ignore[attr-defined]


def test_a_forged_game_server_proof_is_a_security_event(
    player: Player, game_server: GameServerKey, caplog: pytest.LogCaptureFixture
) -> None:
    body = player.proof_body(game_server)
    body["proof"]["signature"] = "f" * 64

    with caplog.at_level(logging.INFO, logger="scoreboard.security"):
        response = player.client.post("/api/v1/actions/complete", body, format="json")

    assert response.status_code == 403
    assert security_events(caplog) == [("WARNING", "game_server_proof_invalid")]


def test_bad_credentials_and_forged_or_replayed_jwts_are_security_events(
    api_client: APIClient,
    make_user: Callable[..., Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    user = make_user()
    pair = api_client.post(
        "/api/v1/auth/token",
        {"username": user.username, "password": TEST_PASSWORD},
        format="json",
    ).json()["data"]

    with caplog.at_level(logging.INFO, logger="scoreboard.security"):
        api_client.post(
            "/api/v1/auth/token",
            {"username": user.username, "password": "wrong password"},
            format="json",
        )
        api_client.get("/api/v1/users/me", HTTP_AUTHORIZATION="Bearer not.a.jwt")
        refresh = {"refreshToken": pair["refreshToken"]}
        renewed = api_client.post("/api/v1/auth/token/refresh", refresh, format="json")
        assert renewed.status_code == 200
        api_client.post("/api/v1/auth/token/refresh", refresh, format="json")

    assert security_events(caplog) == [
        ("WARNING", "login_failed"),
        ("WARNING", "jwt_invalid"),
        ("WARNING", "refresh_token_reuse"),
    ]


def test_ordinary_client_errors_are_not_security_events(
    player: Player, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="scoreboard.security"):
        player.client.patch("/api/v1/users/me", {"country": "XX"}, format="json")
        APIClient().get("/api/v1/users/me")

    assert security_events(caplog) == []


def make_record(**extra: Any) -> logging.LogRecord:
    record = logging.LogRecord(
        "scoreboard.test", logging.WARNING, __file__, 1, "a %s", ("b",), None
    )
    record.__dict__.update(extra)
    return record


def test_the_json_format_is_one_object_per_line_with_the_extras() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = make_record(request_id="r-1", user_id="u-1", status=503)
        record.exc_info = sys.exc_info()

    line = JsonFormatter().format(record)

    assert "\n" not in line
    entry = json.loads(line)
    assert {k: entry[k] for k in ("level", "logger", "message", "request_id", "user_id")} == {
        "level": "WARNING",
        "logger": "scoreboard.test",
        "message": "a b",
        "request_id": "r-1",
        "user_id": "u-1",
    }
    assert entry["status"] == 503
    assert entry["time"].endswith("+00:00")
    assert entry["exception"].splitlines()[-1] == "ValueError: boom"


def test_the_text_format_adds_the_extras_the_message_does_not_show() -> None:
    record = make_record(request_id="r-1", route="api/v1/users/me", shown="b", user_id=None)

    line = TextFormatter().format(record)

    assert line.endswith("WARNING scoreboard.test [r-1] a b route=api/v1/users/me")


SERVE_ONE_REQUEST = (
    "import django; django.setup(); from django.test import Client; "
    "Client().get('/healthz', HTTP_HOST='scores.example.com', HTTP_X_REQUEST_ID='json-1')"
)


def run_one_request(**env: str) -> subprocess.CompletedProcess[str]:
    result = run_with_settings(SERVE_ONE_REQUEST, **env)
    assert result.returncode == 0, result.stderr
    return result


def test_production_logs_are_json_lines(tmp_path: Any) -> None:
    database = f"sqlite:///{tmp_path / 'logs.sqlite3'}"
    result = run_one_request(DEBUG="0", DATABASE_URL=database, STATIC_ROOT=str(tmp_path), **SECRETS)

    entries = [json.loads(line) for line in result.stderr.splitlines()]
    [request_line] = [entry for entry in entries if entry["logger"] == "scoreboard.requests"]
    assert request_line["request_id"] == "json-1"
    assert (request_line["route"], request_line["status"]) == ("healthz", 200)


def test_development_logs_are_text_unless_json_is_asked_for(tmp_path: Any) -> None:
    database = f"sqlite:///{tmp_path / 'logs.sqlite3'}"
    host = {"ALLOWED_HOSTS": "scores.example.com"}
    text = run_one_request(DATABASE_URL=database, **host).stderr
    as_json = run_one_request(DATABASE_URL=database, LOG_FORMAT="json", **host).stderr

    assert "INFO scoreboard.requests [json-1] GET /healthz 200" in text
    assert json.loads(as_json.splitlines()[-1])["request_id"] == "json-1"


# Both servers of production: uvicorn (the live nodes, and `make serve`) and gunicorn with
# docker/gunicorn.conf.py (the API nodes), each with its own logger for its own lines.
@pytest.mark.parametrize(("wsgi", "server_logger"), [(False, "uvicorn"), (True, "gunicorn")])
def test_a_served_node_logs_only_json_lines_and_one_line_per_request(
    tmp_path: Path, start_server: Callable[..., str], wsgi: bool, server_logger: str
) -> None:
    log_path = tmp_path / "node.log"
    base_url = start_server(log_path=log_path, wsgi=wsgi)  # waits for /healthz to answer
    request = urllib.request.Request(  # noqa: S310
        f"{base_url}/healthz", headers={"X-Request-ID": "served-1"}
    )
    with urllib.request.urlopen(request, timeout=5):  # noqa: S310
        pass

    deadline = time.monotonic() + 10
    while "served-1" not in log_path.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    entries = [json.loads(line) for line in log_path.read_text().splitlines()]
    loggers = {entry["logger"] for entry in entries}
    assert f"{server_logger}.error" in loggers  # the server's own lines are JSON too...
    assert f"{server_logger}.access" not in loggers  # ...and its access log does not repeat ours
    assert not any("color_message" in entry for entry in entries)
    [line] = [entry for entry in entries if entry.get("request_id") == "served-1"]
    assert (line["logger"], line["route"], line["status"]) == (
        "scoreboard.requests",
        "healthz",
        200,
    )
