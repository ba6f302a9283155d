"""Rebuild and reconcile keep the Redis index equal to the database, including after Redis
loses everything while scores keep coming in."""

from __future__ import annotations

import os
import re
import signal
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable
from datetime import timedelta
from io import StringIO

import pytest
import redis
from django.core.management import call_command
from django.db import connection
from django.utils import timezone
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from accounts.models import User
from leaderboard.backends.base import BoardKey
from leaderboard.backends.redis import RedisBoard, member_for, members_key, set_key
from leaderboard.backends.sql import SqlBoard
from leaderboard.services import leaderboard_rebuild, leaderboard_reconcile, retained_buckets
from scoring.models import Action, ActionToken, ScoreTotal
from scoring.periods import Period
from scoring.services import (
    actions_load_defaults,
    game_server_create,
    hash_action_token,
    score_update_apply,
)

pytestmark = pytest.mark.django_db


def current_keys() -> list[BoardKey]:
    keys = [
        BoardKey(period=period, period_start=start)
        for period, start in retained_buckets(timezone.now())
    ]
    countries = {country for country in User.objects.values_list("country", flat=True) if country}
    return keys + [
        BoardKey(period=key.period, period_start=key.period_start, country=country)
        for key in keys
        for country in countries
    ]


def assert_index_equals_database() -> None:
    redis_board, sql_board = RedisBoard(), SqlBoard()
    for key in current_keys():
        total = sql_board.total(key)
        assert redis_board.total(key) == total, key
        assert redis_board.top(key, offset=0, limit=total + 1) == sql_board.top(
            key, offset=0, limit=total + 1
        ), key


def seed(make_user: Callable[..., User], count: int) -> list[User]:
    players = [make_user(country=["US", "FR", ""][n % 3]) for n in range(count)]
    now = timezone.now()
    ScoreTotal.objects.bulk_create(
        ScoreTotal(
            board="global",
            period=period,
            period_start=start,
            user=player,
            score=(n * 37) % 11 + 1,
            reached_at=now - timedelta(seconds=n % 4),
        )
        for n, player in enumerate(players)
        for period, start in retained_buckets(now)
    )
    return players


def test_rebuild_writes_every_board_of_the_database(
    make_user: Callable[..., User], redis_index: redis.Redis
) -> None:
    seed(make_user, 30)
    out = StringIO()

    call_command("rebuild_leaderboards", "--chunk-size", "7", stdout=out)

    assert "rebuilt global: " in out.getvalue()
    assert_index_equals_database()


def test_rebuild_drops_what_the_database_no_longer_has(
    make_user: Callable[..., User], redis_index: redis.Redis
) -> None:
    players = seed(make_user, 6)
    leaderboard_rebuild()
    ScoreTotal.objects.filter(user=players[0]).delete()
    User.objects.filter(pk=players[1].pk).update(hide_from_leaderboards=True)  # no signals

    leaderboard_rebuild()

    assert_index_equals_database()


def test_reconcile_repairs_wrong_missing_and_stray_entries(
    make_user: Callable[..., User], redis_index: redis.Redis
) -> None:
    players = seed(make_user, 9)
    leaderboard_rebuild()
    key = BoardKey()
    wrong, missing, stray = players[0], players[1], players[2]
    total = ScoreTotal.objects.get(user=wrong, period=Period.ALL_TIME)
    redis_index.zadd(set_key(key), {member_for(wrong.pk, total.reached_at): 999_999})
    held = redis_index.hget(members_key(key), missing.pk.hex)
    assert isinstance(held, bytes)
    redis_index.zrem(set_key(key), held.split(b"|")[0])
    redis_index.hdel(members_key(key), missing.pk.hex)
    User.objects.filter(pk=stray.pk).update(is_active=False)  # behind the index's back

    report = leaderboard_reconcile()

    assert report.repaired == 2
    assert report.removed >= 1
    assert_index_equals_database()
    assert leaderboard_reconcile().repaired == 0


def test_reconcile_rebuilds_an_index_that_lost_everything(
    make_user: Callable[..., User], redis_index: redis.Redis
) -> None:
    seed(make_user, 5)
    leaderboard_rebuild()
    redis_index.flushdb()
    out = StringIO()

    call_command("reconcile_leaderboards", stdout=out)

    assert "index was empty, rebuilt" in out.getvalue()
    assert_index_equals_database()


@pytest.mark.timeout(30)
def test_the_reconcile_loop_stops_cleanly_on_sigterm(
    make_user: Callable[..., User], redis_index: redis.Redis
) -> None:
    # Given a reconcile loop (as the compose file's `reconcile` service runs it)...
    seed(make_user, 3)
    handler_before = signal.getsignal(signal.SIGTERM)
    out = StringIO()

    def stop_after_the_first_pass() -> None:
        deadline = time.monotonic() + 10
        while "global:" not in out.getvalue() and time.monotonic() < deadline:
            time.sleep(0.02)
        # Without the command's handler SIGTERM would end this whole test run: then send
        # nothing and let the timeout fail the test.
        if signal.getsignal(signal.SIGTERM) is not handler_before:
            os.kill(os.getpid(), signal.SIGTERM)

    stopper = threading.Thread(target=stop_after_the_first_pass, daemon=True)
    stopper.start()

    # ...when SIGTERM arrives while it waits for the next pass (an hour away)...
    call_command("reconcile_leaderboards", "--interval", "3600", stdout=out)
    stopper.join()

    # ...the command returns after its pass, with the previous handler back in place...
    assert out.getvalue().splitlines() == [
        "global: index was empty, rebuilt from the database",
        "stopped (SIGTERM)",
    ]
    assert signal.getsignal(signal.SIGTERM) is handler_before
    assert_index_equals_database()
    # ...and has released its lock: the next run is not told another node is reconciling.
    out = StringIO()
    call_command("reconcile_leaderboards", stdout=out)
    assert out.getvalue().startswith("global: ")


def test_the_reconcile_loop_serves_its_repairs_to_prometheus(
    make_user: Callable[..., User], redis_index: redis.Redis
) -> None:
    # Given an empty index and a loop that serves its metrics...
    seed(make_user, 3)
    rebuilt = {"kind": "index_rebuilt"}
    before = REGISTRY.get_sample_value("scoreboard_leaderboard_reconcile_repairs_total", rebuilt)
    out = StringIO()
    scraped: list[str] = []

    def scrape_then_stop() -> None:
        deadline = time.monotonic() + 10
        while "global:" not in out.getvalue() and time.monotonic() < deadline:
            time.sleep(0.02)
        address = re.search(r"metrics on (\S+)", out.getvalue())
        if address is not None:
            with urllib.request.urlopen(address.group(1), timeout=5) as response:  # noqa: S310
                scraped.append(response.read().decode())
        os.kill(os.getpid(), signal.SIGTERM)

    stopper = threading.Thread(target=scrape_then_stop, daemon=True)
    stopper.start()

    # ...when its first pass rebuilds the index...
    call_command("reconcile_leaderboards", "--interval", "3600", "--metrics-port", "0", stdout=out)
    stopper.join()

    # ...a scrape between passes counts the rebuild.
    [text] = scraped
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    key = ("scoreboard_leaderboard_reconcile_repairs_total", (("kind", "index_rebuilt"),))
    assert samples[key] == (before or 0) + 1


@pytest.mark.django_db(transaction=True)
def test_a_redis_flushed_under_load_converges_to_the_database(
    make_user: Callable[..., User], redis_index: redis.Redis
) -> None:
    """Score updates run on 4 threads while Redis is wiped and rebuilt mid-way; afterwards
    the index equals the database exactly."""
    actions_load_defaults()
    server, _ = game_server_create(name="arena")
    action = Action.objects.get(action_type="ACHIEVEMENT_UNLOCK")
    players = seed(make_user, 12)
    leaderboard_rebuild()
    now = timezone.now()
    tokens = [(players[n % len(players)], f"load-{n}", uuid.uuid4()) for n in range(120)]
    ActionToken.objects.bulk_create(
        ActionToken(
            user=player,
            action_type=action,
            action_id=action_id,
            game_server=server,
            token_hash=hash_action_token(token),
            points=action.base_points,
            completed_at=now,
            expires_at=now + timedelta(minutes=5),
        )
        for player, token, action_id in tokens
    )
    queue = list(tokens)
    lock = threading.Lock()

    def worker() -> None:
        try:
            while True:
                with lock:
                    if not queue:
                        return
                    player, token, action_id = queue.pop()
                score_update_apply(
                    user=player,
                    action_token=token,
                    action_type="ACHIEVEMENT_UNLOCK",
                    action_id=action_id,
                    score_increment=action.base_points,
                    client_timestamp=None,
                    ip_address=None,
                    user_agent="load",
                )
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 30
    while len(queue) > 80 and time.monotonic() < deadline:
        time.sleep(0.01)
    redis_index.flushdb()  # Redis restarts empty under load
    leaderboard_rebuild()
    for thread in threads:
        thread.join(timeout=60)

    leaderboard_reconcile()

    assert not queue
    assert_index_equals_database()


def test_rebuilt_keys_keep_their_own_lifetimes(
    make_user: Callable[..., User], redis_index: redis.Redis
) -> None:
    seed(make_user, 3)

    leaderboard_rebuild()

    assert redis_index.ttl(set_key(BoardKey())) == -1  # all time never expires
    daily = BoardKey(period=Period.DAILY, period_start=timezone.now().date())
    assert 0 < redis_index.ttl(set_key(daily)) <= 2 * 86400
    assert redis_index.ttl(members_key(daily)) == redis_index.ttl(set_key(daily))
    assert not list(redis_index.scan_iter(match="*:rebuild:*"))
