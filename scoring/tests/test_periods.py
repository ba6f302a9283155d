"""Period buckets: UTC day, ISO week (Monday), calendar month, and all time."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from scoring.periods import ALL_TIME_START, Period, period_end, period_start, period_starts


def test_a_moment_falls_into_one_bucket_of_each_period() -> None:
    moment = datetime(2026, 11, 27, 23, 30, tzinfo=UTC)  # a Friday

    assert period_starts(moment) == {
        Period.ALL_TIME: ALL_TIME_START,
        Period.DAILY: date(2026, 11, 27),
        Period.WEEKLY: date(2026, 11, 23),
        Period.MONTHLY: date(2026, 11, 1),
    }


def test_buckets_follow_utc_not_the_local_offset() -> None:
    # 01:30 on the 28th in UTC+3 is still the 27th in UTC.
    moment = datetime(2026, 11, 28, 1, 30, tzinfo=timezone(timedelta(hours=3)))

    assert period_start(Period.DAILY, moment) == date(2026, 11, 27)


def test_iso_weeks_cross_years() -> None:
    moment = datetime(2027, 1, 1, 12, tzinfo=UTC)  # a Friday; its ISO week began on Monday

    assert period_start(Period.WEEKLY, moment) == date(2026, 12, 28)
    assert period_end(Period.WEEKLY, date(2026, 12, 28)) == datetime(2027, 1, 4, tzinfo=UTC)


def test_all_time_never_ends() -> None:
    assert period_end(Period.ALL_TIME, ALL_TIME_START) is None


moments = st.datetimes(
    min_value=datetime(2000, 1, 1),  # noqa: DTZ001 (hypothesis wants naive bounds)
    max_value=datetime(2100, 1, 1),  # noqa: DTZ001
    timezones=st.just(UTC),
)


@given(moment=moments, period=st.sampled_from([Period.DAILY, Period.WEEKLY, Period.MONTHLY]))
def test_every_moment_lies_inside_its_bucket(moment: datetime, period: str) -> None:
    start = period_start(period, moment)
    end = period_end(period, start)

    assert end is not None
    assert datetime(start.year, start.month, start.day, tzinfo=UTC) <= moment < end
    assert period_start(period, end) == end.date()  # the next bucket starts where this ends
