"""The optional read replica of the REST board reads (docs/leaderboards.md, "Read replica").

The served tests run the real app with DATABASE_URL naming database A and DATABASE_REPLICA_URL
naming database B, both migrated, B holding other standings than A, as a replica that lags
far behind would: what each endpoint answers shows which database it read. Both are fresh
PostgreSQL databases when DATABASE_URL is a postgres:// URL, else two SQLite files. With Redis
configured the server's board index is never built, so boards come from SQL on that server.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.db import transaction

from leaderboard.replica import board_read_database
from realtime.tests.cluster import CHANNEL, EventStream, Node
from scoreboard import config
from scoreboard.tests.served import (
    PREPARE_SERVER,
    SERVER_SETTINGS,
    LiveSite,
    Player,
    fresh_postgres_database,
    manage,
)

POSTGRES = os.environ.get("DATABASE_URL", "").startswith(("postgres://", "postgresql://"))
UNREACHABLE_POSTGRES = "postgres://postgres@127.0.0.1:1/replica"
WAIT_SECONDS = 15.0
# Written to database B only: the replica's standings.
REPLICA_STANDINGS = [("replica_first", 900), ("replica_second", 400)]
PREPARE_REPLICA = f"""
from django.core.management import call_command
from django.utils import timezone
from accounts.models import User
from scoring.models import ScoreTotal
from scoring.periods import ALL_TIME_START, Period
call_command("migrate", interactive=False, verbosity=0)
for username, score in {REPLICA_STANDINGS!r}:
    user = User.objects.create_user(username=username, email=f"{{username}}@example.com")
    ScoreTotal.objects.create(
        user=user, period=Period.ALL_TIME, period_start=ALL_TIME_START, score=score,
        reached_at=timezone.now(),
    )
"""

ServeWithReplica = Callable[..., LiveSite]


# ---- the server and its two databases ----------------------------------------------------


@pytest.fixture
def replica_url(tmp_path: Path) -> Iterator[str]:
    """Database B, migrated, with REPLICA_STANDINGS."""
    database_url = os.environ.get("DATABASE_URL", "").strip()
    if POSTGRES:
        with fresh_postgres_database(database_url) as url:
            manage({"DATABASE_URL": url}, "shell", "--no-startup", "-c", PREPARE_REPLICA)
            yield url
    else:
        url = f"sqlite:///{tmp_path / 'replica.sqlite3'}"
        manage({"DATABASE_URL": url}, "shell", "--no-startup", "-c", PREPARE_REPLICA)
        yield url


@pytest.fixture
def serve_with_replica(
    server_services: dict[str, str], start_server: Callable[..., str], tmp_path: Path
) -> ServeWithReplica:
    """Start the server on database A (migrated, with the action catalog and a game server)
    and the given replica URL; its log goes to `tmp_path`/server.log."""

    def serve(replica: str, **extra: str) -> LiveSite:
        printed = manage(server_services, "shell", "--no-startup", "-c", PREPARE_SERVER)
        credentials = json.loads(printed.strip().splitlines()[-1])
        env = {**SERVER_SETTINGS, **server_services, "DATABASE_REPLICA_URL": replica, **extra}
        base_url = start_server(log_path=tmp_path / "server.log", **env)
        return LiveSite(
            base_url=base_url,
            env=server_services,
            key_id=credentials["keyId"],
            secret=credentials["secret"],
        )

    return serve


def call(
    site: LiveSite, method: str, path: str, player: Player, body: Any = None
) -> tuple[int, Any]:
    request = urllib.request.Request(  # noqa: S310
        site.base_url + path,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {player.access}", "Content-Type": "application/json"},
        method=method,
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return response.status, json.load(response)["data"]
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def standings(rows: list[dict[str, Any]]) -> list[tuple[int, str, int]]:
    return [(row["rank"], row["username"], row["score"]) for row in rows]


async def eventually(check: Callable[[], Any], what: str) -> Any:
    deadline = time.monotonic() + WAIT_SECONDS
    while (result := check()) is None:
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} within {WAIT_SECONDS} s")
        await asyncio.sleep(0.05)
    return result


# ---- served ------------------------------------------------------------------------------


async def test_rest_boards_read_the_replica_while_writes_and_live_boards_use_the_primary(
    replica_url: str, serve_with_replica: ServeWithReplica
) -> None:
    site = await asyncio.to_thread(serve_with_replica, replica_url)
    ann = await asyncio.to_thread(site.register, "ann")
    stream = await EventStream.open(
        Node("replicated", site.base_url, Path(os.devnull)),
        f"/api/v1/leaderboard/stream?channel={CHANNEL}",
        token=ann.access,
    )
    try:
        snapshot = await eventually(stream.snapshot, "snapshot")
        assert snapshot.data["leaderboard"] == []  # the primary's board, where nobody scored yet

        # When ann scores, the update is written to the primary (her new rank is read there)...
        result = await asyncio.to_thread(site.score, ann, "COMPLETE_QUEST")
        assert (result["newScore"], result["rank"]) == (50, 1)

        # ...and the live board publishes the primary's standings.
        update = await eventually(lambda: next(iter(stream.updates()), None), "live update")
        assert standings(update.data["leaderboard"]) == [(1, ann.username, 50)]
    finally:
        await stream.close()

    # The REST boards show the replica's standings, which do not have ann's score (yet).
    replica_rows = [(1, "replica_first", 900), (2, "replica_second", 400)]
    for path in ("/api/v1/leaderboard/top", "/api/v1/leaderboard/around-me"):
        status, page = await asyncio.to_thread(call, site, "GET", path, ann)
        assert status == 200, page
        assert standings(page["leaderboard"]) == replica_rows
        assert (page["totalUsers"], page["currentUser"]["rank"]) == (2, None)
        assert page["currentUser"]["score"] == 0
    status, profile = await asyncio.to_thread(call, site, "GET", "/api/v1/users/me", ann)
    assert (status, profile["score"], profile["rank"]) == (200, 0, None)

    # The answer to her own change reads the primary, which has her score.
    status, profile = await asyncio.to_thread(
        call, site, "PATCH", "/api/v1/users/me", ann, {"hideFromLeaderboards": False}
    )
    assert (status, profile["score"], profile["rank"]) == (200, 50, 1)


def test_an_unreachable_replica_leaves_board_reads_to_the_primary(
    serve_with_replica: ServeWithReplica, tmp_path: Path
) -> None:
    # Nothing listens on port 1; SQLite cannot open a directory.
    unreachable = UNREACHABLE_POSTGRES if POSTGRES else f"sqlite:///{tmp_path}"
    site = serve_with_replica(unreachable, DB_POOL_TIMEOUT="1")
    ann = site.register("ann")
    site.score(ann, "COMPLETE_QUEST")

    for path in ("/api/v1/leaderboard/top", "/api/v1/leaderboard/around-me"):
        status, page = call(site, "GET", path, ann)
        assert status == 200, page
        assert standings(page["leaderboard"]) == [(1, ann.username, 50)]
    status, profile = call(site, "GET", "/api/v1/users/me", ann)
    assert (status, profile["score"], profile["rank"]) == (200, 50, 1)

    # One warning for the failure; the reads after it went straight to the primary.
    log = (tmp_path / "server.log").read_text()
    assert log.count("Read replica unavailable") == 1, log


# ---- the alias and the settings ----------------------------------------------------------


def test_without_a_replica_url_there_is_no_replica_database(tmp_path: Path) -> None:
    env = {"DATABASE_URL": "postgres://scores:pw@db.internal/scoreboard"}

    assert config.replica_database_config(env, base_dir=tmp_path) is None


def test_the_replica_has_the_primarys_pool_and_mirrors_default_under_test(tmp_path: Path) -> None:
    env = {
        "DATABASE_URL": "postgres://scores:pw@db.internal/scoreboard",
        "DATABASE_REPLICA_URL": "postgres://reader:pw@replica.internal/scoreboard",
        "DB_POOL_MAX_SIZE": "20",
    }

    replica = config.replica_database_config(env, base_dir=tmp_path)

    assert replica is not None
    assert (replica["HOST"], replica["USER"]) == ("replica.internal", "reader")
    assert replica["OPTIONS"]["pool"] == {"min_size": 2, "max_size": 20, "timeout": 5}
    assert replica["TEST"] == {"MIRROR": "default"}


def test_without_a_replica_board_reads_use_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(settings.DATABASES, "replica", raising=False)

    assert board_read_database() == "default"


@pytest.mark.django_db(transaction=True)
def test_with_a_replica_board_reads_use_it_but_not_inside_a_transaction(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(settings.DATABASES, "replica", settings.DATABASES["default"])

    assert board_read_database() == "replica"
    with transaction.atomic():
        assert board_read_database() == "default"
