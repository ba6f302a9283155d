"""What the live channels publish: marking channels changed, turning a board change into
`leaderboard.update`, `leaderboard.rank_change` and `leaderboard.new_leader` frames, and the
snapshot a new subscriber gets."""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import DatabaseError
from django.utils import timezone

from leaderboard.selectors import board_backend, with_profiles
from leaderboard.services import board_row_data
from realtime.boards import (
    LIVE_BOARD_SIZE,
    LiveChannel,
    channels_showing,
    live_channel,
    period_channels,
)
from realtime.frames import Batch, Frame, encode, timestamp
from realtime.state import Claim, broadcast_state
from scoreboard import metrics
from scoreboard.errors import REDIS_OUTAGES

logger = logging.getLogger(__name__)

Row = dict[str, Any]

# What a live connection outlives: it reports the outage and carries on.
OUTAGES = (DatabaseError, *REDIS_OUTAGES)


def outage_code(error: BaseException) -> str:
    return "DATABASE_ERROR" if isinstance(error, DatabaseError) else "REDIS_ERROR"


def mark_changed(*, board: str, countries: list[str]) -> None:
    """Mark the channels that may show a change on `board` to players of `countries`; the
    throttled flush announces them. Never raises: a lost mark delays an announcement until
    the channel's next change, it loses no score."""
    channels = [channel.name for channel in channels_showing(board=board, countries=countries)]
    try:
        broadcast_state().mark_dirty(channels)
    except REDIS_OUTAGES as error:
        logger.warning("Live channels %s not marked changed: %r", channels, error)


def live_rows(channel: LiveChannel, *, at: datetime | None = None) -> list[Row]:
    """The channel's board as clients see it: the current bucket's top entries."""
    standings = board_backend().top(channel.key(at), offset=0, limit=LIVE_BOARD_SIZE)
    return [board_row_data(row) for row in with_profiles(standings)]


def update_frame(
    channel: str, *, seq: int, rows: list[Row], moment: datetime, snapshot: bool = False
) -> Frame:
    return Frame.of(
        "leaderboard.update",
        {
            "channel": channel,
            "seq": seq,
            "snapshot": snapshot,
            "leaderboard": rows,
            "timestamp": timestamp(moment),
        },
    )


def change_frames(
    channel: str, *, previous: list[Row] | None, rows: list[Row], moment: datetime
) -> list[Frame]:
    """Rank changes of the players now shown (oldRank None for those who just entered) and a
    new leader. Nothing when there is no earlier board to compare with."""
    if previous is None:
        return []
    at = timestamp(moment)
    previous_ranks = {row["userId"]: row["rank"] for row in previous}
    frames = [
        Frame.of(
            "leaderboard.rank_change",
            {
                "channel": channel,
                "userId": row["userId"],
                "username": row["username"],
                "oldRank": previous_ranks.get(row["userId"]),
                "newRank": row["rank"],
                "score": row["score"],
                "timestamp": at,
            },
        )
        for row in rows
        if previous_ranks.get(row["userId"]) != row["rank"]
    ]
    if rows and (not previous or previous[0]["userId"] != rows[0]["userId"]):
        leader = rows[0]
        former = previous[0] if previous else None
        frames.append(
            Frame.of(
                "leaderboard.new_leader",
                {
                    "channel": channel,
                    "userId": leader["userId"],
                    "username": leader["username"],
                    "score": leader["score"],
                    "previousLeader": former
                    and {key: former[key] for key in ("userId", "username", "score")},
                    "timestamp": at,
                },
            )
        )
    return frames


def flush_tick_ms() -> int:
    """How often each node with listeners looks for changed channels: a twentieth of the
    interval, between 10 and 50 ms. A change waits at most this long for its leading edge."""
    return min(max(settings.SCOREBOARD_BROADCAST_INTERVAL_MS // 20, 10), 50)


def publication_gate_ms() -> int:
    """How long a claim closes its channel: the interval less one flush tick. A change that
    arrives one interval after the last is then claimed by the first tick after it, instead
    of by the first tick after the last claim's gate; with a full-interval gate each of those
    waits would add to the next, and a steady stream of one change per interval would drift
    up to a whole interval behind."""
    return settings.SCOREBOARD_BROADCAST_INTERVAL_MS - flush_tick_ms()


def flush_changed_channels() -> list[tuple[LiveChannel, Batch]]:
    """Claim the changed channels whose gate is open (cluster-wide) and build what each
    publishes. A board that did not change publishes nothing and takes no `seq`."""
    state = broadcast_state()
    publications = []
    for claim in state.claim_due(publication_gate_ms()):
        channel = live_channel(claim.channel)
        if channel is None:
            continue
        try:
            moment = timezone.now()
            rows = live_rows(channel, at=moment)
            board_json = encode(rows)
            if board_json == claim.previous:
                continue
            seq = state.commit(claim, board_json)
        except Exception:
            logger.exception("Live channel %s not published; retried after its interval", channel)
            _mark_again(claim)
            continue
        if seq is None:
            continue
        metrics.live_broadcast_published(marked_at=claim.marked_at)
        previous = json.loads(claim.previous) if claim.previous else None
        frames = [
            update_frame(channel.name, seq=seq, rows=rows, moment=moment),
            *change_frames(channel.name, previous=previous, rows=rows, moment=moment),
        ]
        publications.append((channel, Batch(channel.name, seq, frames)))
    return publications


def _mark_again(claim: Claim) -> None:
    """Mark a channel whose publication failed again, keeping when its change was made."""
    try:
        broadcast_state().mark_dirty([claim.channel], marked_at=claim.marked_at)
    except REDIS_OUTAGES as error:
        logger.warning("Live channel %s not marked again: %r", claim.channel, error)


def mark_new_buckets(*, before: datetime, now: datetime) -> None:
    """A new day, week or month starts its boards empty: the channels showing them change
    without any score."""
    changed = [
        channel.name
        for channel in period_channels()
        if channel.key(before).period_start != channel.key(now).period_start
    ]
    if changed:
        broadcast_state().mark_dirty(changed)


def snapshot_batch(channel: LiveChannel) -> Batch:
    """A new subscriber's first frame. `seq` is read before the board, so an update racing
    with the snapshot is never older than it."""
    [seq] = broadcast_state().current_seqs([channel.name])
    moment = timezone.now()
    rows = live_rows(channel, at=moment)
    frame = update_frame(channel.name, seq=seq, rows=rows, moment=moment, snapshot=True)
    return Batch(channel.name, seq, [frame])
