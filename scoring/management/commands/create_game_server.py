import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from scoring.models import GameServer
from scoring.services import game_server_create


class Command(BaseCommand):
    help = (
        "Register a game server allowed to sign action proofs. Prints "
        '{"keyId": ..., "secret": ...} once: the secret cannot be shown again.'
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="A unique name for the server or fleet.")

    def handle(self, *args: Any, name: str, **options: Any) -> None:
        name = name.strip()
        if not name or len(name) > GameServer._meta.get_field("name").max_length:  # type: ignore[operator]
            raise CommandError("The name must be 1 to 100 characters.")
        if GameServer.objects.filter(name=name).exists():
            raise CommandError(f"A game server named {name!r} already exists.")
        server, secret = game_server_create(name=name)
        self.stdout.write(json.dumps({"keyId": server.key_id, "secret": secret}))
