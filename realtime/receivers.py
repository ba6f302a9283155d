"""Mark live channels changed when what they show changes: a committed score, or a player who
hides, leaves, comes back, moves country or is renamed. Both signals arrive after commit."""

from __future__ import annotations

from typing import Any

from django.dispatch import receiver

from accounts.models import User
from accounts.signals import ShownProfileChange, shown_profile_changed
from realtime import broadcast
from scoring.models import ScoreUpdate
from scoring.periods import DEFAULT_BOARD
from scoring.signals import ScoreCommitted, score_committed


# Connected after the leaderboard's receivers (INSTALLED_APPS order), so the index already
# holds the change when a flush reads it.
@receiver(score_committed, sender=ScoreUpdate, dispatch_uid="realtime.mark_score")
def mark_committed_score(sender: Any, event: ScoreCommitted, **kwargs: Any) -> None:
    if event.visible:
        broadcast.mark_changed(board=event.board, countries=[event.country])


@receiver(shown_profile_changed, sender=User, dispatch_uid="realtime.mark_profile")
def mark_shown_profile(sender: Any, change: ShownProfileChange, **kwargs: Any) -> None:
    broadcast.mark_changed(
        board=DEFAULT_BOARD, countries=[change.before["country"], change.after["country"]]
    )
