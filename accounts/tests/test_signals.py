from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.db import transaction

from accounts.models import User
from accounts.signals import ShownProfileChange, shown_profile_changed


@pytest.fixture
def changes() -> Iterator[list[ShownProfileChange]]:
    received: list[ShownProfileChange] = []

    def record(sender: Any, change: ShownProfileChange, **kwargs: Any) -> None:
        received.append(change)

    shown_profile_changed.connect(record, sender=User, dispatch_uid="test.record")
    yield received
    shown_profile_changed.disconnect(sender=User, dispatch_uid="test.record")


def test_a_shown_change_is_announced_after_commit_with_before_and_after(
    make_user: Callable[..., User],
    changes: list[ShownProfileChange],
    django_capture_on_commit_callbacks: Any,
) -> None:
    user = make_user(username="ann", country="FR")
    with django_capture_on_commit_callbacks(execute=True):
        user.country = "DE"
        user.save()
        assert changes == []
    (change,) = changes
    assert change.user_id == user.pk
    assert (change.before["country"], change.after["country"]) == ("FR", "DE")
    assert change.changed("country")
    assert not change.changed("username", "is_active")


def test_saves_that_change_nothing_shown_announce_nothing(
    make_user: Callable[..., User],
    changes: list[ShownProfileChange],
    django_capture_on_commit_callbacks: Any,
) -> None:
    user = make_user(username="ann")
    with django_capture_on_commit_callbacks(execute=True):
        user.save()
        user.last_active_at = user.created_at
        user.save(update_fields=["last_active_at"])
    assert changes == []


@pytest.mark.django_db(transaction=True)
def test_a_rolled_back_change_is_never_announced(
    make_user: Callable[..., User], changes: list[ShownProfileChange]
) -> None:
    user = make_user(username="ann")

    def hide_then_fail() -> None:
        with transaction.atomic():
            user.hide_from_leaderboards = True
            user.save()
            raise RuntimeError("rollback")

    with pytest.raises(RuntimeError):
        hide_then_fail()
    assert changes == []
    user.refresh_from_db()
    user.username = "anne"
    user.save()
    assert [change.after["username"] for change in changes] == ["anne"]
