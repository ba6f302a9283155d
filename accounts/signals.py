"""`shown_profile_changed`: sent after commit when a saved player's boards-relevant fields
changed, so the boards and the live channels follow without this app knowing them. And the
Moderators group membership, kept in step with the role on every save."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from functools import partial
from typing import Any

from django.db import transaction
from django.db.models.signals import post_save, pre_save
from django.dispatch import Signal, receiver

from accounts.models import Role, User
from accounts.services import user_role_groups_sync

logger = logging.getLogger(__name__)

# What decides whether and where a player appears on boards, and what the boards show of them.
SHOWN_FIELDS = ("is_active", "hide_from_leaderboards", "country", "username", "avatar")

# Sent with sender=User and change=ShownProfileChange, only after the transaction commits.
shown_profile_changed = Signal()


@dataclass(frozen=True)
class ShownProfileChange:
    user_id: uuid.UUID
    before: dict[str, Any]
    after: dict[str, Any]

    def changed(self, *fields: str) -> bool:
        return any(self.before[name] != self.after[name] for name in fields)


@receiver(pre_save, sender=User, dispatch_uid="accounts.remember_shown_profile")
def _remember_shown_profile(sender: Any, instance: User, **kwargs: Any) -> None:
    update_fields = kwargs.get("update_fields")
    if instance._state.adding or (
        update_fields is not None and not set(update_fields) & set(SHOWN_FIELDS)
    ):
        return
    instance._shown_before = (  # type: ignore[attr-defined]
        User.objects.filter(pk=instance.pk).values(*SHOWN_FIELDS).first()
    )


@receiver(post_save, sender=User, dispatch_uid="accounts.sync_role_groups")
def _sync_role_groups(sender: Any, instance: User, created: bool, **kwargs: Any) -> None:
    update_fields = kwargs.get("update_fields")
    if update_fields is not None and "role" not in update_fields:
        return
    if created and instance.role != Role.MODERATOR:
        return  # a new user is in no group
    user_role_groups_sync(user=instance)


@receiver(post_save, sender=User, dispatch_uid="accounts.announce_shown_profile")
def _announce_shown_profile(sender: Any, instance: User, created: bool, **kwargs: Any) -> None:
    before = getattr(instance, "_shown_before", None)
    instance._shown_before = None  # type: ignore[attr-defined]
    if created or before is None:
        return
    after = {name: getattr(instance, name) for name in SHOWN_FIELDS}
    if before != after:
        change = ShownProfileChange(user_id=instance.pk, before=before, after=after)
        transaction.on_commit(partial(_send, change), robust=True)


def _send(change: ShownProfileChange) -> None:
    for receiver_, result in shown_profile_changed.send_robust(sender=User, change=change):
        if isinstance(result, Exception):
            logger.error("shown_profile_changed receiver %r failed", receiver_, exc_info=result)
