"""The cluster-wide throttle and sequence numbers, in-process and through Redis."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from realtime.broadcast import flush_tick_ms, publication_gate_ms
from realtime.state import BroadcastState, LocalBroadcastState, RedisBroadcastState

INTERVAL_MS = 200


@pytest.fixture(params=["local", "redis"])
def new_state(request: pytest.FixtureRequest) -> Callable[[], BroadcastState]:
    """Makes the state as one node sees it; in Redis mode every node shares it."""
    if request.param == "redis":
        request.getfixturevalue("redis_index")
        return RedisBroadcastState
    shared = LocalBroadcastState()
    return lambda: shared


def test_a_changed_channel_is_claimed_once_per_interval_and_its_trailing_change_later(
    new_state: Callable[[], BroadcastState],
) -> None:
    state = new_state()
    state.mark_dirty(["leaderboard.top10", "leaderboard.daily.top10"])
    first = state.claim_due(INTERVAL_MS)
    assert sorted(claim.channel for claim in first) == [
        "leaderboard.daily.top10",
        "leaderboard.top10",
    ]
    assert state.claim_due(INTERVAL_MS) == []

    state.mark_dirty(["leaderboard.top10"])  # changed again inside the interval
    assert state.claim_due(INTERVAL_MS) == []
    time.sleep(INTERVAL_MS / 1000 + 0.05)
    assert [claim.channel for claim in state.claim_due(INTERVAL_MS)] == ["leaderboard.top10"]
    assert state.claim_due(INTERVAL_MS) == []


def test_one_change_per_interval_is_claimed_as_it_comes_and_never_drifts_behind(
    new_state: Callable[[], BroadcastState], settings: Any
) -> None:
    """Each change comes one interval after the one before and is claimed half a tick late,
    as a node's flush finds it. The gate has opened again by the next change, so the
    lateness does not add up from one change to the next."""
    settings.SCOREBOARD_BROADCAST_INTERVAL_MS = 400
    state = new_state()
    late = flush_tick_ms() / 2000
    for _ in range(3):
        state.mark_dirty(["leaderboard.top10"])
        time.sleep(late)
        assert [claim.channel for claim in state.claim_due(publication_gate_ms())] == [
            "leaderboard.top10"
        ]
        time.sleep(settings.SCOREBOARD_BROADCAST_INTERVAL_MS / 1000 - late)
    state.mark_dirty(["leaderboard.top10"])
    assert [claim.channel for claim in state.claim_due(publication_gate_ms())] == [
        "leaderboard.top10"
    ]


def test_seq_grows_by_one_per_publication_and_the_last_board_comes_with_the_next_claim(
    new_state: Callable[[], BroadcastState],
) -> None:
    state = new_state()
    assert state.current_seqs(["leaderboard.top10"]) == [0]
    seqs = []
    previous = []
    for board in ('[{"rank":1}]', '[{"rank":2}]', '[{"rank":3}]'):
        state.mark_dirty(["leaderboard.top10"])
        (claim,) = state.claim_due(1)
        previous.append(claim.previous)
        seqs.append(state.commit(claim, board))
        time.sleep(0.005)
    assert seqs == [1, 2, 3]
    assert previous == [None, '[{"rank":1}]', '[{"rank":2}]']
    assert state.current_seqs(["leaderboard.top10", "leaderboard.daily.top10"]) == [3, 0]


def test_a_claim_overtaken_by_a_later_one_publishes_nothing(
    new_state: Callable[[], BroadcastState],
) -> None:
    slow_node, fast_node = new_state(), new_state()
    slow_node.mark_dirty(["leaderboard.top10"])
    (slow,) = slow_node.claim_due(1)
    time.sleep(0.005)
    fast_node.mark_dirty(["leaderboard.top10"])
    (fast,) = fast_node.claim_due(1)

    assert fast_node.commit(fast, '["new"]') == 1
    assert slow_node.commit(slow, '["old"]') is None
    assert fast_node.current_seqs(["leaderboard.top10"]) == [1]
    fast_node.mark_dirty(["leaderboard.top10"])
    time.sleep(0.005)
    (next_claim,) = fast_node.claim_due(1)
    assert next_claim.previous == '["new"]'


def test_nodes_claiming_at_once_split_the_channels_without_overlap(
    new_state: Callable[[], BroadcastState],
) -> None:
    channels = [f"leaderboard.country.{code}.top10" for code in ("US", "DE", "FR", "JP", "BR")]
    new_state().mark_dirty(channels)
    nodes = 8
    barrier = threading.Barrier(nodes)
    claimed: list[Any] = []
    lock = threading.Lock()

    def node() -> None:
        state = new_state()
        barrier.wait()
        got = state.claim_due(INTERVAL_MS)
        with lock:
            claimed.extend(claim.channel for claim in got)

    threads = [threading.Thread(target=node) for _ in range(nodes)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert sorted(claimed) == sorted(channels)


@pytest.mark.usefixtures("redis_index")
def test_redis_state_lives_under_the_key_prefix(settings: Any, redis_index: Any) -> None:
    state = RedisBroadcastState()
    state.mark_dirty(["leaderboard.top10"])
    (claim,) = state.claim_due(INTERVAL_MS)
    state.commit(claim, "[]")
    keys = sorted(key.decode() for key in redis_index.keys("*"))
    prefix = f"{settings.REDIS_KEY_PREFIX}:live:leaderboard.top10:"
    assert keys == [prefix + "claim", prefix + "gate", prefix + "last", prefix + "seq"]


def test_a_claim_carries_when_its_channel_was_first_marked_since_the_last_claim(
    new_state: Callable[[], BroadcastState],
) -> None:
    state = new_state()
    state.mark_dirty(["leaderboard.top10"], marked_at=1000.0)
    state.mark_dirty(["leaderboard.top10"], marked_at=2000.0)  # waits with the first change
    before = time.time()
    state.mark_dirty(["leaderboard.daily.top10"])
    after = time.time()

    claims = {claim.channel: claim.marked_at for claim in state.claim_due(1)}

    assert claims["leaderboard.top10"] == 1000.0
    assert before - 0.001 <= claims["leaderboard.daily.top10"] <= after + 0.001
    state.mark_dirty(["leaderboard.top10"], marked_at=3000.0)  # a change after the claim
    time.sleep(0.005)
    assert [(claim.channel, claim.marked_at) for claim in state.claim_due(1)] == [
        ("leaderboard.top10", 3000.0)
    ]
