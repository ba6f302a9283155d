"""Apply the retention rules of docs/privacy.md; run it daily from cron. Safe to repeat and to
interrupt: each batch commits on its own, and a run finds only what is left to do."""

from __future__ import annotations

from argparse import ArgumentParser
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from accounts.services import refresh_tokens_prune
from scoring.privacy import action_tokens_prune, audit_details_prune


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


class Command(BaseCommand):
    help = (
        "Delete action tokens and refresh tokens past retention and clear old score updates' "
        "IP addresses and user agents, a batch per transaction."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--batch-size", type=int, default=1000)
        parser.add_argument(
            "--dry-run", action="store_true", help="Count what would change; change nothing."
        )

    def handle(self, *args: Any, batch_size: int, dry_run: bool, **options: Any) -> None:
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1.")
        now = timezone.now()
        tokens_before = now - timedelta(days=settings.SCOREBOARD_ACTION_TOKEN_RETENTION_DAYS)
        details_before = now - timedelta(days=settings.SCOREBOARD_AUDIT_DETAIL_RETENTION_DAYS)
        if dry_run:
            self.stdout.write("dry run: nothing is changed")

        tokens = action_tokens_prune(before=tokens_before, batch_size=batch_size, dry_run=dry_run)
        self.stdout.write(
            f"action tokens expired before {_iso(tokens_before)}: "
            f"{'would delete' if dry_run else 'deleted'} {tokens}"
        )
        details = audit_details_prune(before=details_before, batch_size=batch_size, dry_run=dry_run)
        self.stdout.write(
            f"score updates recorded before {_iso(details_before)}: "
            f"{'would clear' if dry_run else 'cleared'} the IP address and user agent of {details}"
        )
        refresh = refresh_tokens_prune(now=now, batch_size=batch_size, dry_run=dry_run)
        self.stdout.write(
            f"refresh tokens expired before {_iso(now)}: "
            f"{'would delete' if dry_run else 'deleted'} {refresh}"
        )
