"""From committed scores to the frames a channel publishes, in both modes."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.utils import timezone
from hypothesis import given
from hypothesis import strategies as st

from realtime.boards import live_channel
from realtime.broadcast import (
    change_frames,
    flush_changed_channels,
    mark_new_buckets,
    snapshot_batch,
)
from realtime.state import broadcast_state
from realtime.tests.conftest import index_built
from scoreboard.config import Rate
from scoring.models import ScoreTotal
from scoring.periods import Period, period_start
from scoring.tests.fixtures import GameServerKey, Player

MOMENT = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
TOP10 = "leaderboard.top10"


def row(rank: int, name: str, score: int) -> dict[str, Any]:
    return {"rank": rank, "userId": name, "username": name, "score": score}


def events(frames: list[Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(frame.event, json.loads(frame.data_json)) for frame in frames]


def test_rank_changes_name_who_moved_and_who_entered() -> None:
    previous = [row(1, "ann", 300), row(2, "bob", 200), row(3, "cy", 100)]
    rows = [row(1, "ann", 300), row(2, "dee", 250), row(3, "bob", 200)]
    changes = events(change_frames(TOP10, previous=previous, rows=rows, moment=MOMENT))
    assert changes == [
        (
            "leaderboard.rank_change",
            {
                "channel": TOP10,
                "userId": "dee",
                "username": "dee",
                "oldRank": None,
                "newRank": 2,
                "score": 250,
                "timestamp": "2026-11-27T12:00:00Z",
            },
        ),
        (
            "leaderboard.rank_change",
            {
                "channel": TOP10,
                "userId": "bob",
                "username": "bob",
                "oldRank": 2,
                "newRank": 3,
                "score": 200,
                "timestamp": "2026-11-27T12:00:00Z",
            },
        ),
    ]


def test_a_new_leader_names_the_previous_one() -> None:
    previous = [row(1, "ann", 300), row(2, "bob", 200)]
    rows = [row(1, "bob", 400), row(2, "ann", 300)]
    changes = events(change_frames(TOP10, previous=previous, rows=rows, moment=MOMENT))
    assert [event for event, _ in changes] == [
        "leaderboard.rank_change",
        "leaderboard.rank_change",
        "leaderboard.new_leader",
    ]
    assert changes[-1][1] == {
        "channel": TOP10,
        "userId": "bob",
        "username": "bob",
        "score": 400,
        "previousLeader": {"userId": "ann", "username": "ann", "score": 300},
        "timestamp": "2026-11-27T12:00:00Z",
    }


def test_the_first_leader_of_an_empty_board_has_no_predecessor() -> None:
    changes = events(change_frames(TOP10, previous=[], rows=[row(1, "ann", 5)], moment=MOMENT))
    assert changes[-1][0] == "leaderboard.new_leader"
    assert changes[-1][1]["previousLeader"] is None


def test_without_an_earlier_board_there_is_nothing_to_compare() -> None:
    assert change_frames(TOP10, previous=None, rows=[row(1, "ann", 5)], moment=MOMENT) == []


boards = st.lists(st.sampled_from("abcdefghijkl"), unique=True, max_size=10).map(
    lambda names: [row(index + 1, name, 1000 - index) for index, name in enumerate(names)]
)


@given(previous=boards, rows=boards)
def test_changes_are_exactly_the_shown_players_whose_rank_differs(
    previous: list[dict[str, Any]], rows: list[dict[str, Any]]
) -> None:
    changes = events(change_frames(TOP10, previous=previous, rows=rows, moment=MOMENT))
    moved = [data for event, data in changes if event == "leaderboard.rank_change"]
    old = {entry["userId"]: entry["rank"] for entry in previous}
    assert [(m["userId"], m["oldRank"], m["newRank"]) for m in moved] == [
        (entry["userId"], old.get(entry["userId"]), entry["rank"])
        for entry in rows
        if old.get(entry["userId"]) != entry["rank"]
    ]
    leaders = [data for event, data in changes if event == "leaderboard.new_leader"]
    leader_changed = bool(rows) and (not previous or previous[0]["userId"] != rows[0]["userId"])
    assert len(leaders) == (1 if leader_changed else 0)


@pytest.fixture
def scorer(
    live_mode: str,
    game_server: GameServerKey,
    settings: Any,
    django_capture_on_commit_callbacks: Any,
) -> Callable[[Player], None]:
    """Score one action for a player, with everything that runs after commit."""
    settings.SCOREBOARD_RATE_SCORE_UPDATES = Rate(1000, 60)
    settings.SCOREBOARD_BROADCAST_INTERVAL_MS = 50
    if live_mode == "redis":
        index_built()

    def score(player: Player) -> None:
        with django_capture_on_commit_callbacks(execute=True):
            response = player.score_action(game_server)
        assert response.status_code == 200, response.content

    return score


def wait_interval() -> None:
    import time

    time.sleep(0.06)


def test_a_committed_score_publishes_on_every_channel_showing_the_player(
    scorer: Callable[[Player], None], make_player: Callable[..., Player]
) -> None:
    ann = make_player(username="ann", country="FR")
    scorer(ann)
    publications = {channel.name: batch for channel, batch in flush_changed_channels()}
    assert sorted(publications) == [
        "leaderboard.country.FR.top10",
        "leaderboard.daily.top10",
        "leaderboard.monthly.top10",
        "leaderboard.top10",
        "leaderboard.weekly.top10",
    ]
    batch = publications[TOP10]
    # The channel's first publication has no earlier board to compare with: no changes.
    ((event, update),) = events(batch.frames)
    assert event == "leaderboard.update"
    assert update["seq"] == batch.seq == 1
    assert update["snapshot"] is False
    assert [(r["username"], r["score"], r["rank"]) for r in update["leaderboard"]] == [
        ("ann", 100, 1)
    ]
    assert flush_changed_channels() == []


def test_updates_follow_each_other_with_seq_one_apart_and_carry_rank_changes(
    scorer: Callable[[Player], None], make_player: Callable[..., Player]
) -> None:
    ann, bob = make_player(username="ann"), make_player(username="bob")
    scorer(ann)
    flush_changed_channels()
    wait_interval()
    scorer(bob)
    scorer(bob)
    wait_interval()
    batch = {c.name: b for c, b in flush_changed_channels()}[TOP10]
    assert batch.seq == 2
    frames = events(batch.frames)
    assert [(r["username"], r["rank"]) for r in frames[0][1]["leaderboard"]] == [
        ("bob", 1),
        ("ann", 2),
    ]
    assert [(e, d.get("username"), d.get("oldRank"), d.get("newRank")) for e, d in frames[1:]] == [
        ("leaderboard.rank_change", "bob", None, 1),
        ("leaderboard.rank_change", "ann", 1, 2),
        ("leaderboard.new_leader", "bob", None, None),
    ]
    assert frames[-1][1]["previousLeader"]["username"] == "ann"


def test_a_board_that_did_not_change_publishes_nothing_and_takes_no_seq(
    scorer: Callable[[Player], None], make_player: Callable[..., Player]
) -> None:
    scorer(make_player(username="ann"))
    flush_changed_channels()
    wait_interval()
    broadcast_state().mark_dirty([TOP10])
    assert flush_changed_channels() == []
    assert broadcast_state().current_seqs([TOP10]) == [1]


def test_hidden_players_change_nothing_live(
    scorer: Callable[[Player], None], make_player: Callable[..., Player]
) -> None:
    scorer(make_player(username="ghost", hide_from_leaderboards=True))
    assert flush_changed_channels() == []


def test_a_player_who_hides_or_moves_country_is_announced(
    scorer: Callable[[Player], None],
    make_player: Callable[..., Player],
    django_capture_on_commit_callbacks: Any,
) -> None:
    ann = make_player(username="ann", country="FR")
    scorer(ann)
    flush_changed_channels()
    wait_interval()
    with django_capture_on_commit_callbacks(execute=True):
        ann.user.country = "DE"
        ann.user.save()
    publications = {c.name: b for c, b in flush_changed_channels()}
    assert (
        json.loads(publications["leaderboard.country.FR.top10"].frames[0].data_json)["leaderboard"]
        == []
    )
    assert [
        r["username"]
        for r in json.loads(publications["leaderboard.country.DE.top10"].frames[0].data_json)[
            "leaderboard"
        ]
    ] == ["ann"]
    wait_interval()
    with django_capture_on_commit_callbacks(execute=True):
        ann.user.hide_from_leaderboards = True
        ann.user.save(update_fields=["hide_from_leaderboards"])
    top = {c.name: b for c, b in flush_changed_channels()}[TOP10]
    assert json.loads(top.frames[0].data_json)["leaderboard"] == []


def test_unrelated_profile_saves_announce_nothing(
    scorer: Callable[[Player], None],
    make_player: Callable[..., Player],
    django_capture_on_commit_callbacks: Any,
) -> None:
    ann = make_player(username="ann")
    scorer(ann)
    flush_changed_channels()
    wait_interval()
    with django_capture_on_commit_callbacks(execute=True):
        ann.user.last_active_at = MOMENT
        ann.user.save(update_fields=["last_active_at"])
    assert flush_changed_channels() == []


def test_a_new_day_publishes_the_empty_daily_board(
    scorer: Callable[[Player], None], make_player: Callable[..., Player], live_mode: str
) -> None:
    scorer(make_player(username="ann"))
    flush_changed_channels()
    wait_interval()
    # Yesterday's points: the daily bucket the score went into is over.
    today = timezone.now()
    yesterday = today - timedelta(days=1)
    ScoreTotal.objects.filter(period=Period.DAILY).update(
        period_start=period_start(Period.DAILY, yesterday)
    )
    if live_mode == "redis":
        index_built()
    mark_new_buckets(before=today, now=today)
    assert flush_changed_channels() == []

    mark_new_buckets(before=yesterday, now=today)
    publications = {c.name: b for c, b in flush_changed_channels()}
    assert sorted(publications) == ["leaderboard.daily.top10"]
    (event, data), *_ = events(publications["leaderboard.daily.top10"].frames)
    assert (event, data["leaderboard"]) == ("leaderboard.update", [])


def test_the_snapshot_carries_the_current_seq(
    scorer: Callable[[Player], None], make_player: Callable[..., Player]
) -> None:
    scorer(make_player(username="ann"))
    flush_changed_channels()
    channel = live_channel(TOP10)
    assert channel is not None
    snapshot = snapshot_batch(channel)
    (event, data) = events(snapshot.frames)[0]
    assert (event, data["seq"], data["snapshot"], snapshot.seq) == (
        "leaderboard.update",
        1,
        True,
        1,
    )
    assert [r["username"] for r in data["leaderboard"]] == ["ann"]
    assert uuid.UUID(data["leaderboard"][0]["userId"])
