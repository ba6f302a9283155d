import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from leaderboard.backends.redis import connection
from leaderboard.services import index_enabled, leaderboard_reconcile
from scoreboard.errors import REDIS_OUTAGES
from scoring.periods import DEFAULT_BOARD

LOCK_SECONDS = 600


class Command(BaseCommand):
    help = (
        "Compare the Redis leaderboard index with the database and repair any drift (a lost "
        "index is rebuilt). With --interval it keeps doing so; several nodes may run it, a "
        "Redis lock lets one work at a time."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--board", default=DEFAULT_BOARD)
        parser.add_argument("--interval", type=int, default=0, help="Seconds between runs.")

    def handle(self, *args: Any, board: str, interval: int, **options: Any) -> None:
        if not index_enabled():
            self.stdout.write("REDIS_URL is not set: boards are read from the database.")
            return
        if interval < 0:
            raise CommandError("--interval must be 0 (once) or more.")
        while True:
            try:
                self._run_once(board)
            except REDIS_OUTAGES as error:
                if not interval:
                    raise CommandError(f"Redis is unavailable: {error}") from error
                self.stderr.write(f"Redis is unavailable, retrying: {error}")
            if not interval:
                return
            time.sleep(interval)

    def _run_once(self, board: str) -> None:
        lock = connection().lock(f"lb-reconcile:{board}", timeout=LOCK_SECONDS)
        if not lock.acquire(blocking=False):
            self.stdout.write("another node is reconciling; skipped")
            return
        try:
            report = leaderboard_reconcile(board=board)
        finally:
            lock.release()
        if report.rebuilt:
            self.stdout.write(f"{board}: index was empty, rebuilt from the database")
        else:
            self.stdout.write(
                f"{board}: {report.checked} entries checked, {report.repaired} repaired, "
                f"{report.removed} stray entries removed"
            )
