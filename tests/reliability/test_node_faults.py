"""Node faults: nodes killed with SIGKILL mid-load behind nginx, and a client's retry with the
same `Idempotency-Key` after its first attempt timed out."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack

import psycopg

from realtime.tests.cluster import Cluster, Earned
from scoreboard.tests.edge import Edge
from tests.reliability.conftest import ANOMALY_RULES_OFF
from tests.reliability.ledger import Outcomes, assert_ledger_holds
from tests.reliability.load import (
    ACTION,
    METRICS_TOKEN,
    NO_ANSWER,
    Listener,
    SteadyLoad,
    call_or_no_answer,
    live_connections,
    scored,
)
from tests.reliability.report import Report, Row

SOCKETS = 6
LOAD_SECONDS = 3.0  # before the kill and after it


async def test_killed_nodes_lose_nothing_and_their_clients_move_to_the_others(
    make_edge: Callable[..., Edge], reliability_report: Report
) -> None:
    edge = make_edge(**ANOMALY_RULES_OFF, SCOREBOARD_METRICS_TOKEN=METRICS_TOKEN)
    cluster, nginx = edge.cluster, edge.nginx
    players = [cluster.register(nginx, "survivor") for _ in range(4)]
    async with AsyncExitStack() as stack:
        listeners = [await Listener.open(cluster, stack, nginx, players[0]) for _ in range(SOCKETS)]
        # The live node with more of the sockets dies (least_conn spreads them over both).
        counts = [await asyncio.to_thread(live_connections, node) for node in edge.live]
        assert sum(counts) == SOCKETS
        doomed = edge.live[0] if counts[0] >= counts[1] else edge.live[1]
        orphaned = max(counts)

        load = SteadyLoad(cluster, players, nodes=(nginx,), allowed=(503,))
        await asyncio.sleep(LOAD_SECONDS)
        edge.kill(edge.api[1])
        edge.kill(doomed)
        killed = time.monotonic()
        await asyncio.sleep(LOAD_SECONDS)
        outcomes = await asyncio.to_thread(load.stop)
        assert outcomes.unexpected == []
        assert outcomes.statuses[200] > 0

        score = await scored(cluster, nginx, players[0], outcomes)
        for listener in listeners:
            await listener.hears(cluster, stack, score)
        moved = time.monotonic() - killed
        assert sum(listener.reconnections for listener in listeners) == orphaned

    checked = assert_ledger_holds(cluster, outcomes)
    reliability_report.add(
        Row.of(
            "an API node and a live node killed behind nginx",
            f"SIGKILL mid-load under 4 scoring clients; {orphaned} of {SOCKETS} sockets on the "
            "killed live node",
            outcomes,
            checked,
            refused=load.refused,
            converged_seconds=moved,
        )
    )


def test_a_retry_with_the_same_idempotency_key_after_a_timeout_applies_once(
    make_cluster: Callable[..., Cluster], reliability_report: Report
) -> None:
    cluster = make_cluster()
    player = cluster.register(cluster.a, "retrier")
    status, earned = cluster.earn(cluster.a, player, ACTION)
    assert isinstance(earned, Earned), (status, earned)
    key = {"Idempotency-Key": f"retry-{earned.action_id}"}
    outcomes = Outcomes()

    # The player's row is locked, so the first attempt is still waiting when the client gives
    # up on it; the retry goes to the other node while the first is still in flight.
    with (
        ThreadPoolExecutor(max_workers=2) as pool,
        psycopg.connect(cluster.env["DATABASE_URL"], connect_timeout=5) as lock,
    ):
        lock.execute("SELECT 1 FROM accounts_user WHERE id = %s FOR UPDATE", [player.user_id])
        first = pool.submit(
            call_or_no_answer,
            lambda: cluster.a.call(
                "POST",
                "/api/v1/scores/update",
                earned.update,
                token=player.access,
                timeout=0.5,
                **{"X-Action-Token": earned.token},
                **key,
            ),
        )
        assert first.result()[0] == NO_ANSWER  # the client timed out
        retry = pool.submit(cluster.spend, cluster.b, earned, **key)
        time.sleep(0.5)
        lock.rollback()
        status, body = retry.result(timeout=30)
    outcomes.record(status, body, user_id=player.user_id, action_id=earned.action_id, allowed=())
    again = cluster.spend(cluster.a, earned, **key)
    outcomes.record(*again, user_id=player.user_id, action_id=earned.action_id, allowed=())

    assert outcomes.statuses[200] == 2, (retry, again)
    assert again[1] == body
    checked = assert_ledger_holds(cluster, outcomes)
    with psycopg.connect(cluster.env["DATABASE_URL"], connect_timeout=5) as db:
        (rows,) = db.execute(
            "SELECT count(*) FROM scoring_scoreupdate WHERE action_id = %s", [earned.action_id]
        ).fetchone() or (0,)
    assert rows == 1
    reliability_report.add(
        Row(
            scenario="retry with the same Idempotency-Key after a timeout",
            injected="first attempt held on a row lock past the client's timeout; retries on "
            "the other node",
            sent=1 + outcomes.sent,
            accepted=len(set(outcomes.accepted)),
            rejected=0,
            lost=len(checked.lost),
            converged_seconds=None,
        )
    )
