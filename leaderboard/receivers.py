"""Keep the index in step with the database: committed scores, and players who hide, leave,
come back or move country. Everything runs after commit and never fails the request."""

from __future__ import annotations

from functools import partial
from typing import Any

from django.db import transaction
from django.db.models.signals import post_save, pre_save
from django.dispatch import receiver

from accounts.models import User
from leaderboard import services
from scoring.models import ScoreUpdate
from scoring.signals import ScoreCommitted, score_committed

# What decides where a player appears on boards.
_PLACEMENT_FIELDS = ("is_active", "hide_from_leaderboards", "country")


@receiver(score_committed, sender=ScoreUpdate, dispatch_uid="leaderboard.index_score")
def index_committed_score(sender: Any, event: ScoreCommitted, **kwargs: Any) -> None:
    services.index_score_committed(event)


@receiver(pre_save, sender=User, dispatch_uid="leaderboard.remember_placement")
def remember_placement(sender: Any, instance: User, **kwargs: Any) -> None:
    if not services.index_enabled() or instance._state.adding:
        return
    update_fields = kwargs.get("update_fields")
    if update_fields is not None and not set(update_fields) & set(_PLACEMENT_FIELDS):
        return
    instance._previous_placement = (  # type: ignore[attr-defined]
        User.objects.filter(pk=instance.pk).values_list(*_PLACEMENT_FIELDS).first()
    )


@receiver(post_save, sender=User, dispatch_uid="leaderboard.resync_placement")
def resync_placement(sender: Any, instance: User, created: bool, **kwargs: Any) -> None:
    previous = getattr(instance, "_previous_placement", None)
    if created or previous is None:
        return
    if previous == tuple(getattr(instance, name) for name in _PLACEMENT_FIELDS):
        return
    transaction.on_commit(
        partial(services.index_user_resync, user_id=instance.pk, previous_country=previous[2]),
        robust=True,
    )
