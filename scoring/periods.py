"""Leaderboard periods: all time, the UTC calendar day, the ISO week and the calendar month.

A total is kept per (board, period, period start, user); `period_starts` names the buckets a
moment falls into. All-time has one bucket, starting at `ALL_TIME_START`.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from django.db import models

ALL_TIME_START = date(1970, 1, 1)
DEFAULT_BOARD = "global"


class Period(models.TextChoices):
    ALL_TIME = "ALL_TIME", "All time"
    DAILY = "DAILY", "Daily (UTC day)"
    WEEKLY = "WEEKLY", "Weekly (ISO week, Monday to Sunday, UTC)"
    MONTHLY = "MONTHLY", "Monthly (UTC calendar month)"


def period_start(period: str, moment: datetime) -> date:
    day = moment.astimezone(UTC).date()
    if period == Period.DAILY:
        return day
    if period == Period.WEEKLY:
        return day - timedelta(days=day.weekday())
    if period == Period.MONTHLY:
        return day.replace(day=1)
    if period == Period.ALL_TIME:
        return ALL_TIME_START
    raise ValueError(f"unknown period {period!r}")


def period_starts(moment: datetime) -> dict[str, date]:
    """Every bucket `moment` belongs to, keyed by period."""
    return {period: period_start(period, moment) for period in Period.values}


def period_end(period: str, start: date) -> datetime | None:
    """The first instant after the bucket that begins at `start` (None for all-time)."""
    if period == Period.DAILY:
        end = start + timedelta(days=1)
    elif period == Period.WEEKLY:
        end = start + timedelta(days=7)
    elif period == Period.MONTHLY:
        end = (start.replace(day=28) + timedelta(days=4)).replace(day=1)
    elif period == Period.ALL_TIME:
        return None
    else:
        raise ValueError(f"unknown period {period!r}")
    return datetime(end.year, end.month, end.day, tzinfo=UTC)
