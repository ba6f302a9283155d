"""Keeping the Redis index equal to the database: writes after each committed score,
re-syncs when a player's visibility or country changes, full rebuilds and reconciliation.

Every write states an absolute total with the version of the row it came from, so a lost
write is repaired by the next one or by reconcile, and a replayed or late one is ignored.
Nothing here can fail a request: index errors are logged, and reconcile repairs the drift.
"""

from __future__ import annotations

import logging
import secrets
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from accounts.models import User
from leaderboard.backends.base import BoardKey
from leaderboard.backends.redis import (
    PAGE_SECONDS,
    RETENTION_SECONDS,
    IndexEntry,
    RedisBoard,
    as_text,
    built_key,
    connection,
    expire_at,
    member_for,
    members_key,
    profiles_changed,
    set_key,
    version_key,
)
from leaderboard.backends.sql import SqlBoard
from leaderboard.models import LeaderboardSnapshot
from leaderboard.selectors import BoardRow, with_profiles
from scoreboard import metrics
from scoreboard.errors import REDIS_OUTAGES
from scoring.models import ScoreTotal
from scoring.periods import DEFAULT_BOARD, Period, period_end, period_start
from scoring.selectors import visible_totals
from scoring.signals import ScoreCommitted

logger = logging.getLogger(__name__)

ABANDONED_REBUILD_SECONDS = 3600

# (period, period start, user id, country, score, reached at, version)
TotalRow = tuple[str, date, uuid.UUID, str, int, datetime, int]
_TOTAL_ROW_FIELDS = (
    "period",
    "period_start",
    "user_id",
    "user__country",
    "score",
    "reached_at",
    "version",
)


def index_enabled() -> bool:
    return bool(settings.REDIS_URL)


def retained_buckets(now: datetime) -> list[tuple[str, date]]:
    """The period buckets the index holds at `now`: all time, and every day, week and month
    bucket that ended less than the retention time ago."""
    buckets = {(Period.ALL_TIME.value, period_start(Period.ALL_TIME, now))}
    for period in (Period.DAILY, Period.WEEKLY, Period.MONTHLY):
        for moment in (now, now - timedelta(seconds=RETENTION_SECONDS)):
            buckets.add((period.value, period_start(period, moment)))
    return sorted(buckets)


def _entries_for(
    *, board: str, row: TotalRow, visible: bool, countries: Iterable[str] = ()
) -> list[IndexEntry]:
    """Index entries of one total: the board itself and its country boards. `countries`
    names country boards the user must be removed from (a country they left)."""
    period, start, user_id, country, score, reached_at, version = row
    entries = [
        IndexEntry(
            key=BoardKey(board=board, period=period, period_start=start),
            user_id=user_id,
            score=score if visible else 0,
            reached_at=reached_at,
            version=version,
        )
    ]
    for code in {country, *countries} - {""}:
        entries.append(
            IndexEntry(
                key=BoardKey(board=board, period=period, period_start=start, country=code),
                user_id=user_id,
                score=score if visible and code == country else 0,
                reached_at=reached_at,
                version=version,
            )
        )
    return entries


def index_score_committed(event: ScoreCommitted) -> None:
    """Put a committed score change into the index (receiver of `score_committed`)."""
    if not index_enabled():
        return
    entries = [
        entry
        for period, total in event.totals.items()
        for entry in _entries_for(
            board=event.board,
            row=(
                period,
                total.period_start,
                event.user_id,
                event.country,
                total.score,
                total.reached_at,
                total.version,
            ),
            visible=event.visible,
        )
    ]
    try:
        RedisBoard().write(entries, force=not event.visible)
    except REDIS_OUTAGES as error:
        metrics.INDEX_WRITE_FAILURES.labels(operation="score").inc()
        logger.error(
            "Leaderboard index write failed for %s; reconcile repairs it: %r", event.user_id, error
        )


def board_pages_forget_profiles() -> None:
    """Cached board pages show players' names, avatars and countries: after a player changed
    what boards show of them, none of those pages is served again."""
    if not index_enabled():
        return
    try:
        profiles_changed()
    except REDIS_OUTAGES as error:
        # The pages themselves are then out of reach too; they expire within PAGE_SECONDS.
        logger.error("Cached board pages not invalidated after a profile change: %r", error)


def index_user_resync(*, user_id: uuid.UUID, previous_country: str = "") -> None:
    """Rewrite a user's entries from the database, after their visibility or country
    changed: shown where they belong, removed everywhere else."""
    if not index_enabled():
        return
    user = User.objects.filter(pk=user_id).first()
    if user is None:
        return
    visible = user.is_on_leaderboards
    buckets = retained_buckets(timezone.now())
    rows = _total_rows(
        ScoreTotal.objects.filter(user=user).filter(_in_buckets(buckets)).order_by("pk")
    )
    entries = [
        entry
        for board, row in rows
        for entry in _entries_for(
            board=board, row=row, visible=visible, countries=[previous_country]
        )
    ]
    try:
        RedisBoard().write(entries, force=True)
    except REDIS_OUTAGES as error:
        metrics.INDEX_WRITE_FAILURES.labels(operation="resync").inc()
        logger.error(
            "Leaderboard index re-sync failed for %s; reconcile repairs it: %r", user_id, error
        )


def _in_buckets(buckets: Iterable[tuple[str, date]]) -> Q:
    condition = Q(pk__in=[])
    for period, start in buckets:
        condition |= Q(period=period, period_start=start)
    return condition


def _total_rows(queryset: Any, *, chunk_size: int = 2000) -> Iterator[tuple[str, TotalRow]]:
    for board, *row in queryset.values_list("board", *_TOTAL_ROW_FIELDS).iterator(
        chunk_size=chunk_size
    ):
        yield board, tuple(row)


def _visible_totals(board: str, buckets: Iterable[tuple[str, date]]) -> Any:
    return visible_totals(board=board).filter(_in_buckets(buckets))


# --- rebuild --------------------------------------------------------------------------------


@dataclass
class RebuildReport:
    entries: int = 0
    keys: int = 0
    caught_up: int = 0


def leaderboard_rebuild(
    *,
    board: str = DEFAULT_BOARD,
    chunk_size: int = 2000,
    progress: Callable[[int, int], None] | None = None,
) -> RebuildReport:
    """Recreate every index key of `board` from the database.

    Entries stream in chunks into temporary keys, which then replace the live ones in one
    MULTI/EXEC (RENAME is atomic), so readers see the old board or the new one, never half.
    Totals that changed while the copy ran are re-applied afterwards (versioned writes, so
    nothing newer is overwritten), and the board is marked built.
    """
    client = connection()
    started = timezone.now()
    buckets = retained_buckets(started)
    suffix = f":rebuild:{secrets.token_hex(6)}"
    report = RebuildReport()
    totals = _visible_totals(board, buckets)
    expected = totals.count()
    built: dict[str, BoardKey] = {}
    pipeline = client.pipeline(transaction=False)
    for _, row in _total_rows(totals.order_by("pk"), chunk_size=chunk_size):
        for entry in _entries_for(board=board, row=row, visible=True):
            name = set_key(entry.key)
            member = member_for(entry.user_id, entry.reached_at)
            pipeline.zadd(name + suffix, {member: entry.score})
            pipeline.hset(
                members_key(entry.key) + suffix, entry.user_id.hex, f"{member}|{entry.version}"
            )
            if name not in built:
                built[name] = entry.key
                # A rebuild that dies half-way leaves nothing behind for long.
                pipeline.expire(name + suffix, ABANDONED_REBUILD_SECONDS)
                pipeline.expire(members_key(entry.key) + suffix, ABANDONED_REBUILD_SECONDS)
        report.entries += 1
        if report.entries % chunk_size == 0:
            pipeline.execute()
            if progress:
                progress(report.entries, expected)
    pipeline.execute()

    stale = [name for name in _live_set_keys(client, board, buckets) if name not in built]
    swap = client.pipeline(transaction=True)
    for name, key in built.items():
        for live in (name, members_key(key)):
            # RENAME keeps the source's time to live: give the key its own.
            if expire_at(key):
                swap.expireat(live + suffix, expire_at(key))
            else:
                swap.persist(live + suffix)
            swap.rename(live + suffix, live)
    for name in stale:
        swap.delete(name, f"{name}:m")
    # Pages cached from the boards before the swap are of another board now: move their
    # versions, which outlive their boards by a page's lifetime.
    for key in built.values():
        swap.incr(version_key(key))
        if expire_at(key):
            swap.expireat(version_key(key), expire_at(key) + PAGE_SECONDS)
    for name in stale:
        swap.incr(f"{name}:v")
        swap.expire(f"{name}:v", PAGE_SECONDS)
    swap.set(built_key(board), started.isoformat())
    swap.execute()
    report.keys = len(built)
    if progress:
        progress(report.entries, expected)

    # Totals committed during the copy may have missed it.
    changed = _visible_totals(board, buckets).filter(reached_at__gte=started - timedelta(seconds=1))
    entries = [
        entry
        for _, row in _total_rows(changed.order_by("pk"))
        for entry in _entries_for(board=board, row=row, visible=True)
    ]
    report.caught_up = RedisBoard(client).write(entries)
    return report


def _live_set_keys(client: Any, board: str, buckets: Iterable[tuple[str, date]]) -> list[str]:
    """The live sorted-set keys of `board` in the given buckets, country boards included."""
    names = []
    for period, start in buckets:
        base = set_key(BoardKey(board=board, period=period, period_start=start))
        for raw in client.scan_iter(match=f"{base}*", count=1000):
            name = raw.decode() if isinstance(raw, bytes) else raw
            rest = name[len(base) :]
            if rest == "" or (len(rest) == 3 and rest.startswith(":")):
                names.append(name)
    return names


# --- reconcile ------------------------------------------------------------------------------


@dataclass
class ReconcileReport:
    checked: int = 0
    repaired: int = 0
    removed: int = 0
    rebuilt: bool = False
    details: list[str] = field(default_factory=list)


def leaderboard_reconcile(*, board: str = DEFAULT_BOARD, chunk_size: int = 2000) -> ReconcileReport:
    """Compare the index with the database and repair every difference.

    An index that lost its data (no built marker) is rebuilt. Otherwise each visible total
    is checked against its entries (missing, wrong score or stale version → rewritten), then
    each entry in the index against the database (a player no longer visible, or not in
    that bucket or country → removed). Memory stays bounded by `chunk_size`.
    """
    client = connection()
    if not client.exists(built_key(board)):
        leaderboard_rebuild(board=board, chunk_size=chunk_size)
        metrics.RECONCILE_REPAIRS.labels(kind="index_rebuilt").inc()
        return ReconcileReport(rebuilt=True)
    report = ReconcileReport()
    buckets = retained_buckets(timezone.now())
    index = RedisBoard(client)

    chunk: list[IndexEntry] = []
    for _, row in _total_rows(
        _visible_totals(board, buckets).order_by("pk"), chunk_size=chunk_size
    ):
        chunk += _entries_for(board=board, row=row, visible=True)
        if len(chunk) >= chunk_size:
            report.repaired += _repair(client, index, chunk)
            report.checked += len(chunk)
            chunk = []
    report.repaired += _repair(client, index, chunk)
    report.checked += len(chunk)

    for name in _live_set_keys(client, board, buckets):
        report.removed += _remove_strays(client, index, board, name, chunk_size)
    metrics.RECONCILE_REPAIRS.labels(kind="entry_rewritten").inc(report.repaired)
    metrics.RECONCILE_REPAIRS.labels(kind="stray_removed").inc(report.removed)
    return report


def _repair(client: Any, index: RedisBoard, entries: list[IndexEntry]) -> int:
    """Rewrite the entries the index does not hold exactly."""
    if not entries:
        return 0
    pipeline = client.pipeline(transaction=False)
    for entry in entries:
        pipeline.hget(members_key(entry.key), entry.user_id.hex)
        pipeline.zscore(set_key(entry.key), member_for(entry.user_id, entry.reached_at))
    replies = pipeline.execute()
    wrong = [
        entry
        for entry, held, score in zip(entries, replies[::2], replies[1::2], strict=True)
        if held is None
        or as_text(held) != f"{member_for(entry.user_id, entry.reached_at)}|{entry.version}"
        or score is None
        or int(score) != entry.score
    ]
    return index.write(wrong, force=True) if wrong else 0


def _remove_strays(client: Any, index: RedisBoard, board: str, name: str, chunk_size: int) -> int:
    """Remove entries of the set `name` that the database does not have on that board."""
    key = _key_from_name(board, name)
    removed = 0
    cursor = 0
    while True:
        cursor, held = client.hscan(members_key(key), cursor=cursor, count=chunk_size)
        user_ids = [uuid.UUID(as_text(user_hex)) for user_hex in held]
        if user_ids:
            expected = _visible_totals(key.board, [(key.period, key.period_start)]).filter(
                user_id__in=user_ids
            )
            if key.country:
                expected = expected.filter(user__country=key.country)
            present = set(expected.values_list("user_id", flat=True))
            strays = [
                IndexEntry(key=key, user_id=user_id, score=0, reached_at=timezone.now(), version=0)
                for user_id in user_ids
                if user_id not in present
            ]
            removed += index.write(strays, force=True) if strays else 0
        if cursor == 0:
            return removed


def _key_from_name(board: str, name: str) -> BoardKey:
    prefix = f"{settings.REDIS_KEY_PREFIX}:lb:{board}:"
    period, start, *country = name[len(prefix) :].split(":")
    return BoardKey(
        board=board,
        period=period,
        period_start=date.fromisoformat(start),
        country=country[0] if country else "",
    )


# --- snapshots ------------------------------------------------------------------------------

SNAPSHOT_PERIODS = (Period.DAILY, Period.WEEKLY, Period.MONTHLY)


def last_closed_bucket(period: str, now: datetime) -> date:
    """Start of the most recent bucket of `period` that has ended by `now`."""
    return period_start(period, _midnight(period_start(period, now)) - timedelta(microseconds=1))


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def leaderboard_snapshot(
    *, period: str, start: date, board: str = DEFAULT_BOARD, now: datetime | None = None
) -> tuple[LeaderboardSnapshot, bool]:
    """Archive the final top of a closed bucket; returns it and whether it was created.

    Idempotent and safe to run from several places at once: a bucket has one snapshot, the
    first written. The standings come from the database, the source of truth.
    """
    end = period_end(period, start)
    if end is None or end > (now or timezone.now()):
        raise ValueError(f"the {period} bucket starting {start} has not ended")
    existing = LeaderboardSnapshot.objects.filter(
        board=board, period=period, period_start=start
    ).first()
    if existing is not None:
        return existing, False
    key = BoardKey(board=board, period=period, period_start=start)
    sql = SqlBoard()
    rows = with_profiles(sql.top(key, offset=0, limit=settings.SCOREBOARD_SNAPSHOT_SIZE))
    try:
        with transaction.atomic():
            snapshot = LeaderboardSnapshot.objects.create(
                board=board,
                period=period,
                period_start=start,
                entries=[board_row_data(row) for row in rows],
                total_users=sql.total(key),
            )
    except IntegrityError:
        return LeaderboardSnapshot.objects.get(
            board=board, period=period, period_start=start
        ), False
    return snapshot, True


def snapshots_forget_user(*, user_id: uuid.UUID) -> int:
    """Take an erased player out of every archived standings, which copied their name, avatar
    and country; returns how many snapshots changed. The other entries keep their archived
    ranks (reads leave out players no longer shown in any case)."""
    entry_id = str(user_id)
    changed = 0
    for snapshot in LeaderboardSnapshot.objects.filter(entries__icontains=entry_id):
        kept = [entry for entry in snapshot.entries if entry.get("userId") != entry_id]
        if len(kept) != len(snapshot.entries):
            snapshot.entries = kept
            snapshot.save(update_fields=["entries"])
            changed += 1
    return changed


def board_row_data(row: BoardRow) -> dict[str, Any]:
    """A board entry as the API shows it."""
    return {
        "rank": row.rank,
        "userId": str(row.user_id),
        "username": row.username,
        "score": row.score,
        "avatar": row.avatar,
        "country": row.country,
        "lastUpdated": row.last_updated.isoformat().replace("+00:00", "Z"),
    }
