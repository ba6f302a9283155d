"""Two app nodes, one cluster (DESIGN.md §3, §5).

Two uvicorn processes share one PostgreSQL database and one Redis (realtime/tests/cluster.py).
Scores go in through one node's HTTP API and come out live on the other node's WebSocket and
event stream; the throttle and `seq` hold across the cluster.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from contextlib import AsyncExitStack
from functools import partial

import pytest

from realtime.tests.cluster import (
    CHANNEL,
    INTERVAL_MS,
    Cluster,
    EventStream,
    LiveSocket,
    Player,
    Received,
)

pytestmark = [pytest.mark.redis, pytest.mark.timeout(120)]

# How much closer than the interval two updates may arrive: delivery delays vary on a busy
# machine. A behaviour check, not a performance assertion.
ARRIVAL_TOLERANCE_MS = 250
# The burst: four players, alternately through both nodes.
SCORES_PER_PLAYER = 5
ROW_FIELDS = {"rank", "userId", "username", "score", "avatar", "country", "lastUpdated"}


def board(update: Received) -> list[tuple[int, str, int]]:
    """(rank, userId, score) of every row an update shows."""
    rows = update.data["leaderboard"]
    assert all(set(row) == ROW_FIELDS for row in rows), rows
    return [(row["rank"], row["userId"], row["score"]) for row in rows]


# ---- the tests ---------------------------------------------------------------------------


async def test_a_score_sent_to_one_node_is_pushed_live_by_the_other(cluster: Cluster) -> None:
    a, b = cluster.a, cluster.b
    first = await asyncio.to_thread(cluster.register, a, "Runner")
    second = await asyncio.to_thread(cluster.register, a, "Climber")
    ticket = await asyncio.to_thread(b.ticket, first)
    async with AsyncExitStack() as stack:
        socket = await cluster.socket(stack, f"{b.ws_url}?ticket={ticket}")
        snapshot = await cluster.subscribed(socket)
        assert snapshot.data["channel"] == CHANNEL
        assert snapshot.data["leaderboard"] == []
        seq = snapshot.data["seq"]

        # When the first player scores through node A...
        result = await asyncio.to_thread(cluster.score, a, first, "COMPLETE_QUEST")
        sent_at = time.monotonic()
        assert result["newScore"] == 50

        # ...node B pushes the board with the next seq.
        update = await cluster.eventually(lambda: socket.update_with_seq(seq + 1), "update 1")
        assert board(update) == [(1, first.user_id, 50)]
        assert update.data["channel"] == CHANNEL
        first_latency_ms = (update.at - sent_at) * 1000

        # When the second player overtakes through node A (a channel's first publication has
        # no earlier board to compare with, so the change events are checked on the second)...
        await asyncio.to_thread(cluster.score, a, second, "WIN_GAME")
        sent_at = time.monotonic()

        # ...node B pushes the new board, the rank changes and the new leader together.
        update = await cluster.eventually(lambda: socket.update_with_seq(seq + 2), "update 2")
        assert board(update) == [(1, second.user_id, 100), (2, first.user_id, 50)]
        stamp = update.data["timestamp"]
        changes = [(f.event, f.data) for f in socket.batch_of(update)[1:]]
        assert changes == [
            (
                "leaderboard.rank_change",
                {
                    "channel": CHANNEL,
                    "userId": second.user_id,
                    "username": second.username,
                    "oldRank": None,
                    "newRank": 1,
                    "score": 100,
                    "timestamp": stamp,
                },
            ),
            (
                "leaderboard.rank_change",
                {
                    "channel": CHANNEL,
                    "userId": first.user_id,
                    "username": first.username,
                    "oldRank": 1,
                    "newRank": 2,
                    "score": 50,
                    "timestamp": stamp,
                },
            ),
            (
                "leaderboard.new_leader",
                {
                    "channel": CHANNEL,
                    "userId": second.user_id,
                    "username": second.username,
                    "score": 100,
                    "previousLeader": {
                        "userId": first.user_id,
                        "username": first.username,
                        "score": 50,
                    },
                    "timestamp": stamp,
                },
            ),
        ]
        print(
            f"\ncommit on node A → frame on node B: {first_latency_ms:.0f} ms (leading edge), "
            f"{(update.at - sent_at) * 1000:.0f} ms (second score, within one interval)"
        )


async def test_the_throttle_and_seq_hold_across_the_cluster(cluster: Cluster) -> None:
    a, b = cluster.a, cluster.b
    players = await asyncio.gather(
        *(asyncio.to_thread(cluster.register, node, "Sprinter") for node in (a, b) * 2)
    )
    ticket = await asyncio.to_thread(b.ticket, players[0])
    async with AsyncExitStack() as stack:
        # A ticket taken from node B works on node A; the bearer subprotocol on node B.
        on_a = await cluster.socket(stack, f"{a.ws_url}?ticket={ticket}")
        on_b = await cluster.socket(stack, b.ws_url, subprotocols=["bearer", players[1].access])
        assert on_b.ws.subprotocol == "bearer"
        snapshots = [await cluster.subscribed(socket) for socket in (on_a, on_b)]
        seq = snapshots[0].data["seq"]
        assert snapshots[1].data["seq"] == seq

        # When 20 scores arrive within a second or two, alternately through both nodes...
        def play(number: int, player: Player) -> int:
            actions = ("WIN_GAME", "COMPLETE_QUEST", "ACHIEVEMENT_UNLOCK")
            results = [
                cluster.score((a, b)[(number + turn) % 2], player, actions[(number + turn) % 3])
                for turn in range(SCORES_PER_PLAYER)
            ]
            return max(result["newScore"] for result in results)

        started = time.monotonic()
        totals = await asyncio.gather(
            *(asyncio.to_thread(play, number, player) for number, player in enumerate(players))
        )
        burst_seconds = time.monotonic() - started
        final = {player.user_id: total for player, total in zip(players, totals, strict=True)}

        def showing_final(socket: LiveSocket) -> Received | None:
            updates = socket.updates()
            if updates and {user: score for _, user, score in board(updates[-1])} == final:
                return updates[-1]
            return None

        # ...both sockets end on the final totals (the trailing edge is delivered)...
        last = [
            await cluster.eventually(partial(showing_final, s), "final board") for s in (on_a, on_b)
        ]
        await asyncio.sleep(3 * INTERVAL_MS / 1000)  # time for anything published late

    # ...having seen exactly the same frames, one seq after another...
    published = [
        [(f.event, f.data) for f in s.frames if not f.data.get("snapshot")] for s in (on_a, on_b)
    ]
    assert published[0] == published[1]
    seqs = [update.data["seq"] for update in on_a.updates()]
    assert seqs == list(range(seq + 1, seq + 1 + len(seqs)))
    assert len(seqs) >= 2, "the burst fitted in one interval: nothing was throttled"
    assert [socket.updates()[-1] for socket in (on_a, on_b)] == last
    rows = board(last[0])
    assert [rank for rank, _, _ in rows] == [
        1 + sum(other > score for _, _, other in rows) for _, _, score in rows
    ]

    # ...never two within one interval (less a tolerance for uneven delivery).
    gaps_ms = [
        (later.at - earlier.at) * 1000
        for socket in (on_a, on_b)
        for earlier, later in itertools.pairwise(socket.updates())
    ]
    assert min(gaps_ms) >= INTERVAL_MS - ARRIVAL_TOLERANCE_MS, gaps_ms
    scores = len(players) * SCORES_PER_PLAYER
    print(
        f"\n{scores} scores in {burst_seconds * 1000:.0f} ms → {len(seqs)} updates per socket; "
        f"gaps {min(gaps_ms):.0f}-{max(gaps_ms):.0f} ms (interval {INTERVAL_MS} ms); "
        f"final board {(last[0].at - started - burst_seconds) * 1000:.0f} ms after the burst"
    )


async def test_the_event_stream_carries_what_the_websocket_does(cluster: Cluster) -> None:
    a, b = cluster.a, cluster.b
    first, second = await asyncio.gather(
        asyncio.to_thread(cluster.register, a, "Watcher"),
        asyncio.to_thread(cluster.register, b, "Chaser"),
    )
    ticket = await asyncio.to_thread(a.ticket, first)
    async with AsyncExitStack() as stack:
        socket = await cluster.socket(stack, f"{a.ws_url}?ticket={ticket}")
        stream = await EventStream.open(
            b, f"/api/v1/leaderboard/stream?channel={CHANNEL}", token=first.access
        )
        stack.push_async_callback(stream.close)
        await cluster.eventually(lambda: stream.status or None, "response to the stream request")
        assert stream.status == 200, stream.error_body
        assert stream.headers["content-type"].startswith("text/event-stream")
        ws_snapshot = await cluster.subscribed(socket)
        sse_snapshot = await cluster.subscribed(stream)
        assert stream.headers["cache-control"] == "no-cache"
        assert sse_snapshot.event == "leaderboard.update"
        seq = ws_snapshot.data["seq"]
        assert (sse_snapshot.data["seq"], sse_snapshot.data["leaderboard"]) == (seq, [])

        # When one player scores and another overtakes, through node A...
        await asyncio.to_thread(cluster.score, a, first, "COMPLETE_QUEST")
        for client in (socket, stream):
            await cluster.eventually(partial(client.update_with_seq, seq + 1), "update 1")
        await asyncio.to_thread(cluster.score, a, second, "WIN_GAME")
        for client in (socket, stream):
            await cluster.eventually(partial(client.update_with_seq, seq + 2), "update 2")
        await asyncio.sleep(2 * INTERVAL_MS / 1000)  # time for anything published late

    # ...the event stream on node B carries exactly what the WebSocket on node A does.
    frames = [
        [(f.event, f.data) for f in c.frames if not f.data.get("snapshot")]
        for c in (socket, stream)
    ]
    assert frames[0] == frames[1]
    assert [f.data["seq"] for f in stream.updates()] == [seq + 1, seq + 2]
    assert board(stream.updates()[-1]) == [(1, second.user_id, 100), (2, first.user_id, 50)]
    assert [f.event for f in stream.batch_of(stream.updates()[-1])] == [
        "leaderboard.update",
        "leaderboard.rank_change",
        "leaderboard.rank_change",
        "leaderboard.new_leader",
    ]
