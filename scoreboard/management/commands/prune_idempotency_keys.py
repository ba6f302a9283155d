"""Delete idempotency records past SCOREBOARD_IDEMPOTENCY_TTL_SECONDS; run it from cron."""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from scoreboard.idempotency import prune_expired_records


class Command(BaseCommand):
    help = "Delete expired Idempotency-Key records, a batch per statement."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--batch-size", type=int, default=1000)

    def handle(self, *args: Any, batch_size: int, **options: Any) -> None:
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1.")
        deleted = prune_expired_records(batch_size=batch_size)
        self.stdout.write(f"deleted {deleted} expired idempotency records")
