"""`/metrics`: what the API's outcomes add to the series, who may scrape them, several worker
processes scraped as one, and the alert rules that read them (docs/operations.md)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.db import connection
from django.test import Client
from drf_spectacular.generators import SchemaGenerator
from rest_framework.test import APIClient

from accounts.models import User
from conftest import TEST_PASSWORD, _missing_service
from scoreboard import metrics
from scoreboard.config import Rate
from scoreboard.tests.metric_samples import (
    Samples,
    family_names,
    parse_scrape,
    registry_value,
    sample,
)
from scoreboard.tests.served import SERVER_SETTINGS
from scoring.tests.fixtures import GameServerKey, Player

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = ROOT / "docker" / "prometheus"
TOKEN = "metrics-token-" + "m" * 32
SCORES = "api/v1/scores/update"
COMPLETE = "api/v1/actions/complete"


def changed(before: Samples, after: Samples, name: str, *labels: str) -> dict[Any, float]:
    """The samples of `name` that moved, keyed by the values of `labels`, with how much."""
    moved: dict[Any, float] = {}
    for (sample_name, labelset), value in after.items():
        difference = value - before.get((sample_name, labelset), 0.0)
        if sample_name == name and difference:
            values = dict(labelset)
            key = tuple(values[label] for label in labels)
            moved[key[0] if len(key) == 1 else key] = difference
    return moved


@pytest.fixture
def scrape(settings: Any) -> Callable[[], Samples]:
    """Scrape `/metrics` as Prometheus would, with the bearer token."""
    settings.SCOREBOARD_METRICS_TOKEN = TOKEN
    client = Client()

    def scrape_() -> Samples:
        response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
        assert response.status_code == 200, response.content
        return parse_scrape(response.content.decode())

    return scrape_


def signed_up_player(api_client: APIClient, username: str) -> Player:
    """Register and sign in through the API, as a game client does."""
    registered = api_client.post(
        "/api/v1/auth/register",
        {
            "username": username,
            "email": f"{username}@example.com",
            "password": TEST_PASSWORD,
            "country": "FR",
        },
        format="json",
    )
    assert registered.status_code == 201, registered.content
    signed_in = api_client.post(
        "/api/v1/auth/token", {"username": username, "password": TEST_PASSWORD}, format="json"
    )
    assert signed_in.status_code == 200, signed_in.content
    data = signed_in.json()["data"]
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {data['accessToken']}")
    return Player(
        user=User.objects.get(pk=data["user"]["id"]), client=client, signing_key=data["signingKey"]
    )


# --- what the API's outcomes count ----------------------------------------------------------


@pytest.mark.django_db
def test_a_scripted_run_through_the_api_is_counted_exactly(
    api_client: APIClient,
    catalog: None,
    game_server: GameServerKey,
    settings: Any,
    scrape: Callable[[], Samples],
) -> None:
    settings.SCOREBOARD_RATE_SCORE_UPDATES = Rate(5, 60)
    before = scrape()

    player = signed_up_player(api_client, "metrics_ann")
    first_token, first = player.complete(game_server)
    forged = player.proof_body(game_server)
    forged["proof"]["signature"] = "0" * 64
    assert player.client.post(f"/{COMPLETE}", forged, format="json").status_code == 403
    counted = player.submit(first_token, player.update_body(action_id=first["actionId"]))
    second_token, second = player.complete(game_server)
    bad_signature = player.submit(
        second_token,
        player.update_body(action_id=second["actionId"], signing_key="not-the-signing-key"),
    )
    reused = player.submit(first_token, player.update_body(action_id=first["actionId"]))
    # A second win straight after the first one is TOO_FAST (weight 30): flagged...
    flagged = player.submit(second_token, player.update_body(action_id=second["actionId"]))
    # ...and held once the hold threshold is down to the same risk.
    settings.SCOREBOARD_ANOMALY_HOLD_THRESHOLD = 30
    third_token, third = player.complete(game_server)
    held = player.submit(third_token, player.update_body(action_id=third["actionId"]))
    limited = player.submit("any", {})  # the sixth within the minute
    unmatched = api_client.get("/no-such-page")

    after = scrape()
    statuses = [
        response.status_code
        for response in (counted, bad_signature, reused, flagged, held, limited, unmatched)
    ]
    assert statuses == [200, 403, 403, 200, 202, 429, 404]
    assert changed(before, after, "scoreboard_score_updates_accepted_total", "status") == {
        "COUNTED": 1,
        "FLAGGED": 1,
        "HELD": 1,
    }
    assert changed(before, after, "scoreboard_score_updates_rejected_total", "code", "reason") == {
        ("FORBIDDEN", "InvalidClientSignature"): 1,
        ("INVALID_ACTION_TOKEN", "InvalidActionToken"): 1,
        ("RATE_LIMIT_EXCEEDED", "RateLimited"): 1,
    }
    assert changed(
        before, after, "scoreboard_action_completions_rejected_total", "code", "reason"
    ) == {("FORBIDDEN", "InvalidProof"): 1}
    assert changed(before, after, "scoreboard_action_tokens_issued_total") == {(): 3}
    assert changed(before, after, "scoreboard_action_tokens_consumed_total") == {(): 3}
    assert changed(before, after, "scoreboard_action_tokens_rejected_total", "reason") == {
        "used": 1
    }
    assert changed(before, after, "scoreboard_rate_limit_hits_total", "limit") == {
        "score-update": 1
    }
    assert changed(before, after, "http_requests_total", "method", "route", "status") == {
        ("POST", "api/v1/auth/register", "201"): 1,
        ("POST", "api/v1/auth/token", "200"): 1,
        ("POST", COMPLETE, "201"): 3,
        ("POST", COMPLETE, "403"): 1,
        ("POST", SCORES, "200"): 2,
        ("POST", SCORES, "202"): 1,
        ("POST", SCORES, "403"): 2,
        ("POST", SCORES, "429"): 1,
        ("GET", "unmatched", "404"): 1,
    }
    assert changed(before, after, "http_request_duration_seconds_count", "method", "route") == {
        ("POST", "api/v1/auth/register"): 1,
        ("POST", "api/v1/auth/token"): 1,
        ("POST", COMPLETE): 4,
        ("POST", SCORES): 6,
        ("GET", "unmatched"): 1,
    }


@pytest.mark.django_db
def test_requests_are_labelled_with_their_url_pattern_not_their_path(
    make_player: Callable[..., Player], scrape: Callable[[], Samples]
) -> None:
    player = make_player()
    before = scrape()

    for _ in range(2):  # two ids, one series
        url = f"/api/v1/moderation/flags/{uuid.uuid4()}/approve"
        assert player.client.post(url).status_code == 403
    Client().generic("BREW", "/healthz")

    after = scrape()
    assert changed(before, after, "http_requests_total", "method", "route", "status") == {
        ("POST", "api/v1/moderation/flags/<uuid:update_id>/approve", "403"): 2,
        ("other", "healthz", "405"): 1,
    }


@pytest.mark.django_db
def test_a_request_answered_before_routing_still_gets_its_route(
    settings: Any, scrape: Callable[[], Samples]
) -> None:
    settings.SCOREBOARD_RATE_API_PER_IP = Rate(1, 60)
    before = scrape()

    answers = [Client().get("/api/v1/leaderboard/top").status_code for _ in range(2)]

    after = scrape()
    assert answers == [401, 429]
    assert changed(before, after, "http_requests_total", "route", "status") == {
        ("api/v1/leaderboard/top", "401"): 1,
        ("api/v1/leaderboard/top", "429"): 1,
    }
    assert changed(before, after, "scoreboard_rate_limit_hits_total", "limit") == {"api-ip": 1}


@pytest.mark.django_db
def test_the_scrape_itself_is_not_counted(scrape: Callable[[], Samples]) -> None:
    scrape()
    samples = scrape()
    assert not [labels for (name, labels) in samples if ("route", "metrics") in labels]


@pytest.mark.django_db
def test_the_database_pool_is_sampled_after_each_request_and_at_each_scrape(
    settings: Any, scrape: Callable[[], Samples]
) -> None:
    pool = settings.DATABASES["default"].get("OPTIONS", {}).get("pool")
    if connection.vendor != "postgresql":  # SQLite: no pool, no series
        Client().get("/healthz")
        assert (
            metrics.REGISTRY.get_sample_value(
                "database_connection_pool_max", {"database": "default"}
            )
            is None
        )
        assert "database_connection_pool_max" not in {name for name, _ in scrape()}
        return
    metrics.DATABASE_POOL_MAX.labels(database="default").set(-1)

    Client().get("/healthz")  # touches no database, yet its end samples the pool

    assert registry_value("database_connection_pool_max", database="default") == pool["max_size"]
    samples = scrape()
    assert sample(samples, "database_connection_pool_max", database="default") == pool["max_size"]
    # The test's own connection is checked out of the pool while it runs.
    active = sample(samples, "database_connection_pool_active", database="default")
    assert 1 <= active <= pool["max_size"]


# --- who may scrape -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer wrong-token", f"Basic {TOKEN}", f"Bearer {TOKEN}x", "Bearer"],
)
def test_with_a_token_set_only_that_bearer_token_scrapes(
    settings: Any, authorization: str | None
) -> None:
    settings.SCOREBOARD_METRICS_TOKEN = TOKEN
    settings.DEBUG = True  # the token applies whatever DEBUG says
    headers = {"HTTP_AUTHORIZATION": authorization} if authorization else {}

    response = Client().get("/metrics", **headers)  # type: ignore[arg-type]

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer realm="metrics"'
    assert b"http_requests" not in response.content


def test_the_right_token_gets_the_text_format(settings: Any) -> None:
    settings.SCOREBOARD_METRICS_TOKEN = TOKEN
    settings.DEBUG = False

    response = Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")

    assert response.status_code == 200
    assert response["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert "# TYPE http_requests_total counter" in response.content.decode()


def test_without_a_token_metrics_are_open_with_debug_on(settings: Any) -> None:
    settings.SCOREBOARD_METRICS_TOKEN = None
    settings.DEBUG = True
    assert Client().get("/metrics").status_code == 200


def test_without_a_token_metrics_are_off_with_debug_off(settings: Any) -> None:
    settings.SCOREBOARD_METRICS_TOKEN = None
    settings.DEBUG = False
    response = Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 404
    assert b"http_requests" not in response.content


def test_metrics_are_not_part_of_the_api_schema() -> None:
    schema = SchemaGenerator().get_schema(request=None, public=True)
    assert not [path for path in schema["paths"] if "metrics" in path]


# --- several worker processes ---------------------------------------------------------------


def _get(url: str, token: str | None = None) -> bytes:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(url, headers=headers)  # noqa: S310
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        body: bytes = response.read()
        return body


def test_processes_sharing_a_metrics_directory_are_scraped_as_one(
    tmp_path: Path, server_services: dict[str, str], start_server: Callable[..., str]
) -> None:
    directory = tmp_path / "prometheus"
    directory.mkdir()
    env = {
        **SERVER_SETTINGS,
        **server_services,
        "PROMETHEUS_MULTIPROC_DIR": str(directory),
        "SCOREBOARD_METRICS_TOKEN": TOKEN,
        "DB_POOL_MIN_SIZE": "1",
        "DB_POOL_MAX_SIZE": "3",
    }
    first, second = start_server(**env), start_server(**env)

    for node, requests in ((first, 3), (second, 2)):
        for _ in range(requests):
            _get(f"{node}/readyz")

    for node in (first, second):  # either process answers for both
        samples = parse_scrape(_get(f"{node}/metrics", TOKEN).decode())
        assert (
            sample(samples, "http_requests_total", method="GET", route="readyz", status="200") == 5
        )
        pool_max = sample(samples, "database_connection_pool_max", database="default")
        postgres = server_services["DATABASE_URL"].startswith("postgres")
        # `livemax`: one worker's pool (3), not the sum over both processes.
        assert pool_max == (3 if postgres else 0)


def test_the_live_gauges_of_exited_processes_are_dropped(tmp_path: Path) -> None:
    finished = subprocess.Popen(["true"])  # noqa: S607
    finished.wait()
    gone, alive = finished.pid, os.getpid()
    for pid in (gone, alive):
        (tmp_path / f"gauge_livesum_{pid}.db").touch()
        (tmp_path / f"counter_{pid}.db").touch()

    metrics.dead_processes_forgotten(str(tmp_path))

    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(
        [f"counter_{gone}.db", f"counter_{alive}.db", f"gauge_livesum_{alive}.db"]
    )


# --- the alert rules ------------------------------------------------------------------------

# Series names in PromQL expressions: ours all start with one of these.
_SERIES = re.compile(r"\b(?:http|scoreboard|database)_[a-z_]+\b")


def _rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load((PROMETHEUS_DIR / "alerts.yml").read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def test_the_spec_alerts_are_there_as_written() -> None:
    expressions = {rule["alert"]: " ".join(rule["expr"].split()) for rule in _rules()}
    assert expressions["HighErrorRate"] == (
        'sum(rate(http_requests_total{status=~"5.."}[5m])) '
        "/ sum(rate(http_requests_total[5m])) > 0.05"
    )
    assert expressions["HighLatency"] == (
        "histogram_quantile(0.95, sum by (le) (rate(http_request_duration_seconds_bucket[5m]))) > 1"
    )
    assert expressions["DatabasePoolExhausted"] == (
        "database_connection_pool_active / database_connection_pool_max > 0.9"
    )


@pytest.mark.django_db
def test_every_alert_reads_series_that_metrics_exports(scrape: Callable[[], Samples]) -> None:
    response = Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    exported = family_names(response.content.decode())

    for rule in _rules():
        assert set(rule) >= {"alert", "expr", "labels", "annotations"}, rule
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert rule["annotations"]["summary"]
        for series in _SERIES.findall(rule["expr"]):
            family = re.sub(r"_(total|bucket|count|sum)$", "", series)
            assert series in exported or family in exported, (rule["alert"], series)


def test_prometheus_scrapes_every_node_with_the_token_file_and_loads_the_alerts() -> None:
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    assert config["rule_files"] == ["alerts.yml"]
    nodes, reconcile = config["scrape_configs"]
    assert nodes["metrics_path"] == "/metrics"
    # The compose file's API nodes (gunicorn) and live nodes (uvicorn), each on its port.
    assert nodes["static_configs"] == [
        {"targets": ["api1:8000", "api2:8000"], "labels": {"role": "api"}},
        {"targets": ["live1:8001", "live2:8001"], "labels": {"role": "live"}},
    ]
    assert nodes["authorization"]["type"] == "Bearer"
    assert nodes["authorization"]["credentials_file"]
    # The reconcile loop's own port (compose's `reconcile --metrics-port 9100`).
    assert reconcile["static_configs"] == [{"targets": ["reconcile:9100"]}]


@pytest.mark.parametrize(
    "command", [["check", "rules", "alerts.yml"], ["test", "rules", "alerts.test.yml"]]
)
def test_promtool_accepts_the_rules_and_they_fire_as_their_tests_expect(
    command: list[str],
) -> None:
    """The rules' PromQL, and their unit tests (synthetic series → which alerts fire, with
    which labels and text), by Debian's promtool, which `make test` installs."""
    promtool = shutil.which("promtool")
    if promtool is None:
        _missing_service("promtool is not installed (`make test` installs Debian's prometheus)")
    result = subprocess.run(  # noqa: S603
        [str(promtool), *command],
        cwd=PROMETHEUS_DIR,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
