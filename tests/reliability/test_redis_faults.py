"""Redis faults under steady score load, on a Redis server of the scenario's own.

Stopped for ten seconds and started again empty: writes either commit (200) or fail cleanly
(503), boards are still served from the database, live sockets are closed or keep working and
resync; afterwards reconcile brings the board back to the database's standings and the ledger
holds. Restarted with its data while sockets are connected: every socket hears the updates
published after it is back."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from contextlib import AsyncExitStack

from realtime.tests.cluster import Cluster, Player
from scoreboard.tests.served import manage
from tests.reliability.conftest import RedisServer
from tests.reliability.ledger import Outcomes, assert_ledger_holds, ledger
from tests.reliability.load import Listener, SteadyLoad, scored
from tests.reliability.report import Report, Row

OUTAGE_SECONDS = 10.0
LOAD_SECONDS = 3.0  # before the fault and after recovery
CONVERGE_SECONDS = 60.0


async def board_reads_during(cluster: Cluster, player: Player, seconds: float) -> list[int]:
    """GET the top of the board from both nodes, twice a second, for `seconds`."""
    statuses = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for node in (cluster.a, cluster.b):
            status, _ = await asyncio.to_thread(
                node.call, "GET", "/api/v1/leaderboard/top", token=player.access
            )
            statuses.append(status)
        await asyncio.sleep(0.5)
    return statuses


async def converged(cluster: Cluster, outcomes: Outcomes) -> float:
    """Run one reconcile pass, then wait for the ledger to hold; seconds it took."""
    env = cluster.env
    started = time.monotonic()
    await asyncio.to_thread(manage, env, "reconcile_leaderboards")
    while time.monotonic() - started < CONVERGE_SECONDS:
        report = await asyncio.to_thread(
            ledger, env["DATABASE_URL"], env["REDIS_URL"], env["REDIS_KEY_PREFIX"], outcomes
        )
        if report.holds:
            return time.monotonic() - started
        await asyncio.sleep(0.5)
    assert_ledger_holds(cluster, outcomes)  # fails, saying what does not hold
    raise AssertionError("unreachable")


async def test_redis_stopped_for_ten_seconds_under_load_loses_nothing(
    private_redis: RedisServer,
    make_cluster: Callable[..., Cluster],
    reliability_report: Report,
) -> None:
    cluster = make_cluster(REDIS_URL=private_redis.url)
    players = [cluster.register(cluster.a, "steady") for _ in range(4)]
    async with AsyncExitStack() as stack:
        listeners = [
            await Listener.open(cluster, stack, node, players[0]) for node in (cluster.a, cluster.b)
        ]
        load = SteadyLoad(cluster, players, allowed=(503,))
        await asyncio.sleep(LOAD_SECONDS)

        private_redis.stop()
        reads = await board_reads_during(cluster, players[0], OUTAGE_SECONDS)
        private_redis.start()  # empty
        await asyncio.sleep(LOAD_SECONDS)
        outcomes = await asyncio.to_thread(load.stop)

        assert outcomes.unexpected == []
        assert set(reads) == {200}
        assert outcomes.statuses[200] > 0
        assert outcomes.statuses[503] + load.completions_refused.get(503, 0) > 0
        seconds = await converged(cluster, outcomes)

        score = await scored(cluster, cluster.a, players[0], outcomes)
        for listener in listeners:
            await listener.hears(cluster, stack, score)

    checked = assert_ledger_holds(cluster, outcomes)
    reliability_report.add(
        Row.of(
            "Redis stopped, restarted empty",
            f"Redis down {OUTAGE_SECONDS:.0f} s under 4 scoring clients",
            outcomes,
            checked,
            refused=load.refused,
            converged_seconds=seconds,
        )
    )


async def test_redis_restarted_with_its_data_orphans_no_live_socket(
    private_redis: RedisServer,
    make_cluster: Callable[..., Cluster],
    reliability_report: Report,
) -> None:
    cluster = make_cluster(REDIS_URL=private_redis.url)
    player = cluster.register(cluster.a, "listened")
    outcomes = Outcomes()
    async with AsyncExitStack() as stack:
        listeners = [
            await Listener.open(cluster, stack, node, player) for node in (cluster.a, cluster.b)
        ]
        score = await scored(cluster, cluster.a, player, outcomes)
        for listener in listeners:
            await listener.hears(cluster, stack, score, resync=False)

        private_redis.stop(save=True)
        private_redis.start()
        restarted = time.monotonic()
        score = await scored(cluster, cluster.b, player, outcomes)
        for listener in listeners:
            await listener.hears(cluster, stack, score, resync=False)
        heard = time.monotonic() - restarted
        assert not any(listener.socket.reader.done() for listener in listeners)

    checked = assert_ledger_holds(cluster, outcomes)
    reliability_report.add(
        Row.of(
            "Redis restarted with its data, sockets connected",
            "Redis stopped and started again with its data; one socket per node",
            outcomes,
            checked,
            converged_seconds=heard,
        )
    )
