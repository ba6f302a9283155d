"""Keep the index in step with the database: committed scores, and players who hide, leave,
come back or move country. Everything runs after commit and never fails the request."""

from __future__ import annotations

from typing import Any

from django.dispatch import receiver

from accounts.models import User
from accounts.signals import ShownProfileChange, shown_profile_changed
from leaderboard import services
from scoring.models import ScoreUpdate
from scoring.signals import ScoreCommitted, score_committed

# What decides where a player appears on boards.
_PLACEMENT_FIELDS = ("is_active", "hide_from_leaderboards", "country")


@receiver(score_committed, sender=ScoreUpdate, dispatch_uid="leaderboard.index_score")
def index_committed_score(sender: Any, event: ScoreCommitted, **kwargs: Any) -> None:
    services.index_score_committed(event)


@receiver(shown_profile_changed, sender=User, dispatch_uid="leaderboard.resync_placement")
def resync_placement(sender: Any, change: ShownProfileChange, **kwargs: Any) -> None:
    services.board_pages_forget_profiles()
    if change.changed(*_PLACEMENT_FIELDS):
        services.index_user_resync(
            user_id=change.user_id, previous_country=change.before["country"]
        )
