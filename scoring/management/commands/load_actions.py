from typing import Any

from django.core.management.base import BaseCommand

from scoring.services import DEFAULT_ACTIONS, actions_load_defaults


class Command(BaseCommand):
    help = (
        "Install the default action catalog. Safe to run again: actions that exist keep the "
        "points and settings an operator gave them."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        created = actions_load_defaults()
        for action in created:
            self.stdout.write(f"created {action.action_type} ({action.base_points} points)")
        self.stdout.write(
            f"{len(created)} created, {len(DEFAULT_ACTIONS) - len(created)} already present"
        )
