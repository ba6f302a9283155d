"""Races: one action token spent by 32 clients at once, and 1,000 concurrent updates for ten
players, over two nodes. Exactly one spend wins; every total is exact."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from realtime.tests.cluster import Cluster, Earned
from tests.reliability.ledger import Outcomes, assert_ledger_holds
from tests.reliability.load import earn_many, earn_or_refusal, spend_and_record
from tests.reliability.report import Report, Row

RACERS = 32


def test_one_action_token_raced_by_32_clients_is_spent_once(
    make_cluster: Callable[..., Cluster], reliability_report: Report
) -> None:
    cluster = make_cluster()
    player = cluster.register(cluster.a, "racer")
    status, earned = earn_or_refusal(cluster, cluster.a, player)
    assert isinstance(earned, Earned), (status, earned)
    outcomes = Outcomes()
    start = threading.Barrier(RACERS)

    def race(number: int) -> None:
        start.wait()
        node = (cluster.a, cluster.b)[number % 2]
        spend_and_record(cluster, node, earned, outcomes, allowed=(403, 409))

    with ThreadPoolExecutor(max_workers=RACERS) as pool:
        list(pool.map(race, range(RACERS)))

    assert outcomes.statuses[200] == 1
    assert outcomes.unexpected == []
    assert outcomes.sent == RACERS
    checked = assert_ledger_holds(cluster, outcomes)
    reliability_report.add(
        Row.of(
            "one action token, 32 clients at once",
            "32 simultaneous spends of one token over two nodes",
            outcomes,
            checked,
        )
    )


def test_a_thousand_concurrent_updates_for_ten_players_leave_exact_totals(
    make_cluster: Callable[..., Cluster], reliability_report: Report
) -> None:
    cluster = make_cluster()
    players = [cluster.register(cluster.a, "busy") for _ in range(10)]
    earned = earn_many(cluster, cluster.a, players, 1000)
    outcomes = Outcomes()
    started = time.monotonic()

    def spend(turn: int) -> None:
        node = (cluster.a, cluster.b)[turn % 2]
        spend_and_record(cluster, node, earned[turn], outcomes, allowed=())

    with ThreadPoolExecutor(max_workers=32) as pool:
        list(pool.map(spend, range(1000)))
    elapsed = time.monotonic() - started

    assert outcomes.statuses == Counter({200: 1000})
    increments = Counter[str]()
    for item in earned:
        increments[item.player.user_id] += item.update["scoreIncrement"]
    status, body = cluster.b.call("GET", "/api/v1/leaderboard/top", token=players[0].access)
    assert status == 200, body
    assert {row["userId"]: row["score"] for row in body["data"]["leaderboard"]} == increments
    checked = assert_ledger_holds(cluster, outcomes)
    reliability_report.add(
        Row.of(
            "1,000 concurrent updates, 10 players",
            f"32 clients over two nodes ({elapsed:.1f} s)",
            outcomes,
            checked,
        )
    )
