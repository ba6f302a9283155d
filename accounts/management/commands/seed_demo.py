"""Create a few demo players for a local board. Idempotent: existing players are left alone."""

from __future__ import annotations

import secrets
from typing import Any

from django.core.management.base import BaseCommand

from accounts.models import User
from accounts.services import user_register

DEMO_PLAYERS = (
    ("AceHunter", "US"),
    ("PixelQueen", "GB"),
    ("NeonNinja", "JP"),
    ("ByteKnight", "DE"),
    ("LunaStrike", "BR"),
)


class Command(BaseCommand):
    help = "Create demo players (printing each new player's password once)."

    def handle(self, *args: Any, **options: Any) -> None:
        created = 0
        for username, country in DEMO_PLAYERS:
            if User.objects.filter(username__iexact=username).exists():
                continue
            password = secrets.token_urlsafe(12)
            user_register(
                username=username,
                email=f"{username.lower()}@demo.scoreboard.invalid",
                password=password,
                country=country,
            )
            created += 1
            self.stdout.write(f"demo player {username} ({country}) password: {password}")
        if not created:
            self.stdout.write("demo players already present")
