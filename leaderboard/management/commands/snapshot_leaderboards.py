from datetime import UTC, date, datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from leaderboard.services import SNAPSHOT_PERIODS, last_closed_bucket, leaderboard_snapshot
from scoring.periods import DEFAULT_BOARD, period_start


class Command(BaseCommand):
    help = (
        "Archive the final standings of the last closed day, week and month (or of the "
        "buckets containing --date). Idempotent: run it from cron every minute."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--board", default=DEFAULT_BOARD)
        parser.add_argument(
            "--date", dest="day", help="YYYY-MM-DD: archive the buckets containing this day."
        )

    def handle(self, *args: Any, board: str, day: str | None, **options: Any) -> None:
        now = timezone.now()
        for period in SNAPSHOT_PERIODS:
            start = period_start(period, _day(day)) if day else last_closed_bucket(period, now)
            try:
                snapshot, created = leaderboard_snapshot(
                    period=period, start=start, board=board, now=now
                )
            except ValueError as error:
                self.stdout.write(f"{period} {start}: skipped, {error}")
                continue
            state = "archived" if created else "already archived"
            self.stdout.write(
                f"{period} {start}: {state} ({len(snapshot.entries)} of "
                f"{snapshot.total_users} players)"
            )


def _day(text: str) -> datetime:
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise CommandError("--date must be YYYY-MM-DD.") from None
    return datetime(day.year, day.month, day.day, tzinfo=UTC)
