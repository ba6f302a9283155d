import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from leaderboard.services import index_enabled, leaderboard_rebuild
from scoring.periods import DEFAULT_BOARD


class Command(BaseCommand):
    help = (
        "Recreate the Redis leaderboard index from the database (streamed, swapped in "
        "atomically). Safe while the service runs."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--board", default=DEFAULT_BOARD)
        parser.add_argument("--chunk-size", type=int, default=2000)

    def handle(self, *args: Any, board: str, chunk_size: int, **options: Any) -> None:
        if not index_enabled():
            self.stdout.write("REDIS_URL is not set: boards are read from the database.")
            return
        if chunk_size < 1:
            raise CommandError("--chunk-size must be at least 1.")
        interactive = self.stdout.isatty() or sys.stdout.isatty()

        def progress(done: int, total: int) -> None:
            if interactive:
                width = 30
                filled = width * done // max(total, 1)
                bar = "#" * filled + "." * (width - filled)
                self.stdout.write(f"\r[{bar}] {done}/{total} totals", ending="")
                self.stdout.flush()

        report = leaderboard_rebuild(board=board, chunk_size=chunk_size, progress=progress)
        if interactive:
            self.stdout.write("")
        self.stdout.write(
            f"rebuilt {board}: {report.entries} totals into {report.keys} keys, "
            f"{report.caught_up} caught up after the copy"
        )
