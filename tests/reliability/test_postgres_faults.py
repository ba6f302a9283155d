"""PostgreSQL faults: the database restarted under steady score load (clean 503s, nothing
indexed or broadcast for a transaction that did not commit, recovery without a node restart),
and a row lock held on a hot player (requests fail after the lock timeout, not after 30 s, and
succeed once the lock is gone)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack
from pathlib import Path

import psycopg

from realtime.tests.cluster import Cluster, start_nodes
from tests.reliability.conftest import RELIABILITY_SETTINGS, PostgresServer, migrated
from tests.reliability.ledger import Outcomes, assert_ledger_holds, database_standings
from tests.reliability.load import Listener, SteadyLoad, earn_many, scored, spend_and_record
from tests.reliability.report import Report, Row

LOAD_SECONDS = 3.0
OUTAGE_SECONDS = 5.0
RECOVERY_SECONDS = 5.0
HOT_REQUESTS = 16
# The nodes' DB_LOCK_TIMEOUT_MS and DB_POOL_TIMEOUT (their defaults), and room for the rest.
LOCK_TIMEOUT_SECONDS = 2.0
POOL_TIMEOUT_SECONDS = 5.0


async def test_the_database_restarted_under_load_loses_nothing_and_recovers_by_itself(
    private_postgres: PostgresServer,
    cluster_services: dict[str, str],
    start_server: Callable[..., str],
    tmp_path: Path,
    reliability_report: Report,
) -> None:
    with psycopg.connect(private_postgres.url(), autocommit=True) as admin:
        admin.execute("CREATE DATABASE scoreboard")
    env = {
        **RELIABILITY_SETTINGS,
        **cluster_services,
        "DATABASE_URL": private_postgres.url("scoreboard"),
    }
    key_id, secret = await asyncio.to_thread(migrated, env)
    a, b = await asyncio.to_thread(start_nodes, start_server, env, tmp_path)
    cluster = Cluster(a, b, key_id, secret, env=env)
    players = [cluster.register(cluster.a, "restarted") for _ in range(4)]

    async with AsyncExitStack() as stack:
        listeners = [
            await Listener.open(cluster, stack, node, players[0]) for node in (cluster.a, cluster.b)
        ]
        load = SteadyLoad(cluster, players, allowed=(503,))
        await asyncio.sleep(LOAD_SECONDS)
        await asyncio.to_thread(private_postgres.stop)
        await asyncio.sleep(OUTAGE_SECONDS)
        await asyncio.to_thread(private_postgres.start)
        restarted = time.monotonic()
        await asyncio.sleep(RECOVERY_SECONDS)
        outcomes = await asyncio.to_thread(load.stop)
        assert outcomes.unexpected == []
        assert outcomes.statuses[503] + load.completions_refused.get(503, 0) > 0

        # Both nodes serve again without being restarted.
        for node in (cluster.a, cluster.b):
            score = await scored(cluster, node, players[0], outcomes)
        recovered = time.monotonic() - restarted
        for listener in listeners:
            await listener.hears(cluster, stack, score)

    # The index was never written for an update that did not commit: it matches the
    # database without a reconcile pass, and no broadcast showed more than was committed.
    checked = assert_ledger_holds(cluster, outcomes)
    final = dict(database_standings(env["DATABASE_URL"]))
    for listener in listeners:
        for frame in listener.socket.frames:
            if frame.event == "leaderboard.update":
                for row in frame.data["leaderboard"]:
                    assert row["score"] <= final[row["userId"]], frame
    reliability_report.add(
        Row.of(
            "PostgreSQL restarted under load",
            f"PostgreSQL down {OUTAGE_SECONDS:.0f} s (fast shutdown) under 4 scoring clients",
            outcomes,
            checked,
            refused=load.refused,
            converged_seconds=recovered,
        )
    )


def test_a_row_lock_on_a_hot_player_fails_requests_fast_and_then_they_succeed(
    make_cluster: Callable[..., Cluster], reliability_report: Report
) -> None:
    cluster = make_cluster()
    player = cluster.register(cluster.a, "hot")
    earned = earn_many(cluster, cluster.a, [player], HOT_REQUESTS)
    blocked = Outcomes()

    def spend_timed(turn: int, outcomes: Outcomes) -> float:
        started = time.monotonic()
        node = (cluster.a, cluster.b)[turn % 2]
        spend_and_record(cluster, node, earned[turn], outcomes, allowed=(503,))
        return time.monotonic() - started

    with (
        psycopg.connect(cluster.env["DATABASE_URL"], connect_timeout=5) as lock,
        ThreadPoolExecutor(max_workers=HOT_REQUESTS) as pool,
    ):
        lock.execute("SELECT 1 FROM accounts_user WHERE id = %s FOR UPDATE", [player.user_id])
        waits = list(pool.map(spend_timed, range(HOT_REQUESTS), [blocked] * HOT_REQUESTS))
        lock.rollback()

    assert blocked.statuses == {503: HOT_REQUESTS}, blocked.unexpected
    # Each waited for the lock timeout, behind at most a pool timeout: nowhere near 30 s.
    assert max(waits) < 2 * (LOCK_TIMEOUT_SECONDS + POOL_TIMEOUT_SECONDS), waits

    # Nothing was spent: the same tokens go through once the lock is gone.
    recovered = Outcomes()
    with ThreadPoolExecutor(max_workers=HOT_REQUESTS) as pool:
        list(pool.map(spend_timed, range(HOT_REQUESTS), [recovered] * HOT_REQUESTS))
    assert recovered.statuses == {200: HOT_REQUESTS}
    checked = assert_ledger_holds(cluster, recovered)
    reliability_report.add(
        Row(
            scenario="row lock held on a hot player",
            injected=f"SELECT … FOR UPDATE on the player while {HOT_REQUESTS} updates arrive; "
            f"slowest answer {max(waits):.1f} s",
            sent=blocked.sent + recovered.sent,
            accepted=len(recovered.accepted),
            rejected=blocked.rejected,
            lost=len(checked.lost),
            converged_seconds=None,
        )
    )
