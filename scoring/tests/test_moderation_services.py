"""The moderation services: approve, reject and ban for every status, idempotence, who may
decide, the audit they leave and the events they send."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Group
from django.utils import timezone

from accounts.models import MODERATORS_GROUP, Role, User
from scoreboard.errors import Forbidden
from scoring.exceptions import DecisionConflict, ScoreUpdateNotFound, UserNotFound
from scoring.models import (
    ModerationAction,
    ModerationDecision,
    ReviewDecision,
    ScoreStatus,
    ScoreTotal,
    ScoreUpdate,
)
from scoring.moderation import score_update_approve, score_update_reject, user_ban
from scoring.periods import Period, period_starts
from scoring.signals import PeriodTotal, ScoreCommitted
from scoring.tests.moderation_fixtures import (
    IP_HOP,
    MODERATORS_PERMISSIONS,
    TOO_FAST,
    all_time_score,
    ledger_totals,
    record_update,
    totals_of,
    versions_of,
)

pytestmark = pytest.mark.django_db


def buckets(at: Any, score: int) -> dict[tuple[str, Any], int]:
    return dict.fromkeys(period_starts(at).items(), score)


# --- approve --------------------------------------------------------------------------------


def test_approving_a_held_update_counts_it_and_announces_the_new_totals(
    cheater: User,
    moderator: User,
    committed_events: list[ScoreCommitted],
    django_capture_on_commit_callbacks: Any,
) -> None:
    # Given 50 counted points and a held update of 100
    record_update(cheater, 50)
    held = record_update(cheater, 100, status=ScoreStatus.HELD, reasons=[TOO_FAST])
    versions = versions_of(cheater)

    # When a moderator approves it
    with django_capture_on_commit_callbacks(execute=True):
        outcome = score_update_approve(update_id=held.pk, moderator=moderator)

    # Then it counts, in the buckets it was made in, each total one version newer
    held.refresh_from_db()
    assert outcome.changed
    assert held.status == ScoreStatus.COUNTED
    assert (held.previous_score, held.new_score, held.new_rank) == (50, 150, 1)
    assert (held.review_decision, held.reviewed_by, held.review_reason) == (
        ReviewDecision.APPROVED,
        moderator,
        "",
    )
    assert held.reviewed_at is not None
    assert totals_of(cheater) == buckets(held.created_at, 150)
    assert {b: v - versions[b] for b, v in versions_of(cheater).items()} == dict.fromkeys(
        versions, 1
    )
    # And the decision is in the audit log
    decision = ModerationDecision.objects.get()
    assert (decision.action, decision.moderator, decision.user, decision.score_update) == (
        ModerationAction.APPROVE,
        moderator,
        cheater,
        held,
    )
    assert (decision.previous_status, decision.new_status, decision.points) == (
        "HELD",
        "COUNTED",
        100,
    )
    assert decision.created_at == held.reviewed_at
    # And the boards are told, after commit, with the totals and their versions
    starts = period_starts(held.created_at)
    at = held.reviewed_at
    assert committed_events == [
        ScoreCommitted(
            score_update_id=held.pk,
            user_id=cheater.pk,
            username="speedy",
            country="GB",
            avatar="",
            visible=True,
            board="global",
            status="COUNTED",
            score_increment=100,
            totals={
                period: PeriodTotal(starts[period], 150, at, versions[(period, starts[period])] + 1)
                for period in Period.values
            },
            previous_rank=1,
            new_rank=1,
            committed_at=at,
        )
    ]


def test_a_held_update_from_yesterday_counts_in_yesterdays_day_when_approved_today(
    cheater: User, moderator: User
) -> None:
    yesterday = timezone.now() - timedelta(days=1)
    held = record_update(cheater, 100, status=ScoreStatus.HELD, at=yesterday)

    score_update_approve(update_id=held.pk, moderator=moderator)

    today = period_starts(timezone.now())[Period.DAILY]
    assert totals_of(cheater) == buckets(yesterday, 100)
    assert not ScoreTotal.objects.filter(period=Period.DAILY, period_start=today).exists()
    assert totals_of(cheater) == ledger_totals(cheater)


def test_approving_a_flagged_update_clears_it_and_changes_no_total(
    cheater: User,
    moderator: User,
    committed_events: list[ScoreCommitted],
    django_capture_on_commit_callbacks: Any,
) -> None:
    flagged = record_update(cheater, 100, status=ScoreStatus.FLAGGED, reasons=[IP_HOP])
    versions = versions_of(cheater)

    with django_capture_on_commit_callbacks(execute=True):
        outcome = score_update_approve(update_id=flagged.pk, moderator=moderator, reason="LAN")

    flagged.refresh_from_db()
    assert outcome.changed
    assert (flagged.status, flagged.review_decision, flagged.review_reason) == (
        ScoreStatus.COUNTED,
        ReviewDecision.APPROVED,
        "LAN",
    )
    assert flagged.risk_reasons == [IP_HOP]  # why it was flagged stays on record
    assert versions_of(cheater) == versions
    assert totals_of(cheater) == buckets(flagged.created_at, 100)
    decision = ModerationDecision.objects.get()
    assert (decision.previous_status, decision.new_status, decision.points, decision.reason) == (
        "FLAGGED",
        "COUNTED",
        0,
        "LAN",
    )
    assert committed_events == []


@pytest.mark.parametrize("status", [ScoreStatus.HELD, ScoreStatus.FLAGGED])
def test_approving_twice_counts_once_and_returns_the_first_outcome(
    cheater: User, moderator: User, make_moderator: Callable[..., User], status: str
) -> None:
    update = record_update(cheater, 100, status=status)
    first = score_update_approve(update_id=update.pk, moderator=moderator)

    again = score_update_approve(update_id=update.pk, moderator=make_moderator())

    assert not again.changed
    assert again.decision == first.decision
    assert again.score_update.reviewed_by == moderator
    assert ModerationDecision.objects.count() == 1
    assert all_time_score(cheater) == 100


def test_a_rejected_update_cannot_be_approved(cheater: User, moderator: User) -> None:
    update = record_update(cheater, 100, status=ScoreStatus.FLAGGED)
    score_update_reject(update_id=update.pk, moderator=moderator)

    with pytest.raises(DecisionConflict, match="rejected; it cannot be approved"):
        score_update_approve(update_id=update.pk, moderator=moderator)

    assert all_time_score(cheater) == 0
    assert ModerationDecision.objects.count() == 1


def test_an_update_never_in_review_and_a_reversal_cannot_be_approved(
    cheater: User, moderator: User
) -> None:
    counted = record_update(cheater, 100)
    with pytest.raises(DecisionConflict, match="not awaiting review"):
        score_update_approve(update_id=counted.pk, moderator=moderator)

    reversal = score_update_reject(update_id=counted.pk, moderator=moderator).reversal
    assert reversal is not None
    for decide in (score_update_approve, score_update_reject):
        with pytest.raises(DecisionConflict, match="reversal entry"):
            decide(update_id=reversal.pk, moderator=moderator)


# --- reject ---------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [ScoreStatus.COUNTED, ScoreStatus.FLAGGED])
def test_rejecting_a_counted_update_reverts_it_with_a_compensating_entry(
    make_user: Callable[..., User],
    cheater: User,
    moderator: User,
    committed_events: list[ScoreCommitted],
    django_capture_on_commit_callbacks: Any,
    status: str,
) -> None:
    # Given a rival on 120, and the cheater on 50 + 100 (first place)
    record_update(make_user(), 120)
    record_update(cheater, 50)
    update = record_update(cheater, 100, status=status, reasons=[IP_HOP])
    versions = versions_of(cheater)

    # When a moderator rejects the 100
    with django_capture_on_commit_callbacks(execute=True):
        outcome = score_update_reject(update_id=update.pk, moderator=moderator, reason="bot")

    # Then the update is REJECTED and a REVERSAL takes exactly its points back out
    update.refresh_from_db()
    reversal = outcome.reversal
    assert outcome.changed
    assert reversal is not None
    assert (update.status, update.review_decision, update.reviewed_by, update.review_reason) == (
        ScoreStatus.REJECTED,
        ReviewDecision.REJECTED,
        moderator,
        "bot",
    )
    assert (update.previous_score, update.new_score) == (50, 150)  # when it counted
    assert reversal.reverses == update
    assert (reversal.status, reversal.score_increment, reversal.user) == (
        ScoreStatus.REVERSAL,
        -100,
        cheater,
    )
    assert (reversal.previous_score, reversal.new_score) == (150, 50)
    assert (reversal.previous_rank, reversal.new_rank) == (1, 2)
    assert (reversal.action_type, reversal.action_id) == (update.action_type, update.action_id)
    assert reversal.created_at == update.reviewed_at
    assert totals_of(cheater) == buckets(update.created_at, 50) == ledger_totals(cheater)
    assert {b: v - versions[b] for b, v in versions_of(cheater).items()} == dict.fromkeys(
        versions, 1
    )
    decision = ModerationDecision.objects.get()
    assert (decision.action, decision.previous_status, decision.new_status) == (
        ModerationAction.REJECT,
        status,
        "REJECTED",
    )
    assert (decision.points, decision.reason, decision.moderator) == (-100, "bot", moderator)
    # And the new totals are announced with the reversal
    [event] = committed_events
    assert (event.score_update_id, event.status, event.score_increment) == (
        reversal.pk,
        "REVERSAL",
        -100,
    )
    assert {period: total.score for period, total in event.totals.items()} == dict.fromkeys(
        Period.values, 50
    )
    assert (event.previous_rank, event.new_rank) == (1, 2)


def test_rejecting_a_held_update_discards_it_without_touching_totals(
    cheater: User,
    moderator: User,
    committed_events: list[ScoreCommitted],
    django_capture_on_commit_callbacks: Any,
) -> None:
    record_update(cheater, 50)
    held = record_update(cheater, 100, status=ScoreStatus.HELD)
    versions = versions_of(cheater)

    with django_capture_on_commit_callbacks(execute=True):
        outcome = score_update_reject(update_id=held.pk, moderator=moderator)

    held.refresh_from_db()
    assert outcome.changed
    assert outcome.reversal is None
    assert held.status == ScoreStatus.REJECTED
    assert versions_of(cheater) == versions
    assert all_time_score(cheater) == 50
    assert not ScoreUpdate.objects.filter(status=ScoreStatus.REVERSAL).exists()
    assert ModerationDecision.objects.get().points == 0
    assert committed_events == []


@pytest.mark.parametrize("status", [ScoreStatus.COUNTED, ScoreStatus.FLAGGED, ScoreStatus.HELD])
def test_rejecting_twice_reverts_once_and_returns_the_first_outcome(
    cheater: User, moderator: User, make_moderator: Callable[..., User], status: str
) -> None:
    record_update(cheater, 30)
    update = record_update(cheater, 100, status=status)
    first = score_update_reject(update_id=update.pk, moderator=moderator, reason="first")

    again = score_update_reject(update_id=update.pk, moderator=make_moderator(), reason="second")

    assert not again.changed
    assert (again.decision, again.reversal) == (first.decision, first.reversal)
    assert again.score_update.review_reason == "first"
    assert ScoreUpdate.objects.filter(status=ScoreStatus.REVERSAL).count() == (
        0 if status == ScoreStatus.HELD else 1
    )
    assert ModerationDecision.objects.count() == 1
    assert all_time_score(cheater) == 30


def test_an_approved_hold_can_still_be_rejected_and_loses_its_points_again(
    cheater: User, moderator: User
) -> None:
    held = record_update(cheater, 100, status=ScoreStatus.HELD)
    score_update_approve(update_id=held.pk, moderator=moderator)

    outcome = score_update_reject(update_id=held.pk, moderator=moderator, reason="second look")

    assert outcome.changed
    assert outcome.reversal is not None
    assert all_time_score(cheater) == 0
    assert list(
        ModerationDecision.objects.order_by("created_at").values_list("action", "points")
    ) == [("APPROVE", 100), ("REJECT", -100)]
    assert totals_of(cheater) == ledger_totals(cheater) == {}


def test_a_reversal_never_takes_a_total_below_zero(cheater: User, moderator: User) -> None:
    update = record_update(cheater, 100)
    ScoreTotal.objects.filter(user=cheater).update(score=40)  # drifted by hand

    outcome = score_update_reject(update_id=update.pk, moderator=moderator)

    assert set(ScoreTotal.objects.filter(user=cheater).values_list("score", flat=True)) == {0}
    assert outcome.reversal is not None
    assert (outcome.reversal.previous_score, outcome.reversal.new_score) == (40, 0)


def test_the_ledger_and_the_totals_agree_after_any_mix_of_decisions(
    cheater: User, moderator: User
) -> None:
    earlier = timezone.now() - timedelta(days=40)
    updates = [
        record_update(cheater, 10, at=earlier),
        record_update(cheater, 20, status=ScoreStatus.FLAGGED, at=earlier),
        record_update(cheater, 40, status=ScoreStatus.HELD, at=earlier),
        record_update(cheater, 80, status=ScoreStatus.HELD),
        record_update(cheater, 160, status=ScoreStatus.FLAGGED),
        record_update(cheater, 320, status=ScoreStatus.HELD),
    ]
    approve = (1, 2, 3, 5)
    reject = (0, 2, 4, 5, 4)
    for index in approve:
        score_update_approve(update_id=updates[index].pk, moderator=moderator)
    for index in reject:
        score_update_reject(update_id=updates[index].pk, moderator=moderator)

    # 20 (cleared) + 80 (approved) count; the rest were rejected
    assert all_time_score(cheater) == 100
    assert totals_of(cheater) == ledger_totals(cheater)
    reversals = ScoreUpdate.objects.filter(status=ScoreStatus.REVERSAL)
    assert sorted(reversals.values_list("score_increment", flat=True)) == [-320, -160, -40, -10]


def test_an_unknown_update_is_not_found(moderator: User) -> None:
    with pytest.raises(ScoreUpdateNotFound):
        score_update_approve(update_id=ScoreUpdate().pk, moderator=moderator)
    with pytest.raises(ScoreUpdateNotFound):
        score_update_reject(update_id=ScoreUpdate().pk, moderator=moderator)


# --- who may decide -------------------------------------------------------------------------


def _plain_user(make_user: Callable[..., User]) -> User:
    return make_user(username="plain_player")


def _moderator_without_group(make_moderator: Callable[..., User]) -> User:
    user = make_moderator(username="ungrouped_mod")
    user.groups.clear()  # still staff by role, without the group's permissions
    return User.objects.get(pk=user.pk)


def _inactive_moderator(make_moderator: Callable[..., User]) -> User:
    return make_moderator(username="gone_mod", is_active=False)


def _player_in_the_group(make_user: Callable[..., User]) -> User:
    user = make_user(username="grouped_player")
    user.groups.add(Group.objects.get(name=MODERATORS_GROUP))  # a mistake made by hand
    return User.objects.get(pk=user.pk)


@pytest.mark.parametrize(
    "who",
    [_plain_user, _moderator_without_group, _inactive_moderator, _player_in_the_group],
    ids=["player", "moderator-without-group", "inactive-moderator", "player-in-group"],
)
def test_only_moderators_may_decide(
    request: pytest.FixtureRequest, cheater: User, moderators_group: None, who: Any
) -> None:
    factory = request.getfixturevalue(
        "make_moderator" if "moderator" in who.__name__ else "make_user"
    )
    caller = who(factory)
    update = record_update(cheater, 100, status=ScoreStatus.HELD)

    for attempt in (
        lambda: score_update_approve(update_id=update.pk, moderator=caller),
        lambda: score_update_reject(update_id=update.pk, moderator=caller),
        lambda: user_ban(user_id=cheater.pk, moderator=caller),
    ):
        with pytest.raises(Forbidden):
            attempt()

    update.refresh_from_db()
    assert update.status == ScoreStatus.HELD
    assert User.objects.get(pk=cheater.pk).is_active
    assert not ModerationDecision.objects.exists()


def test_admins_may_decide_without_the_group(make_user: Callable[..., User], cheater: User) -> None:
    admin = make_user(role=Role.ADMIN)
    update = record_update(cheater, 100, status=ScoreStatus.HELD)

    assert score_update_approve(update_id=update.pk, moderator=admin).changed


# --- ban ------------------------------------------------------------------------------------


def test_a_ban_deactivates_the_player_and_takes_them_off_the_boards(
    make_user: Callable[..., User],
    cheater: User,
    moderator: User,
    django_capture_on_commit_callbacks: Any,
) -> None:
    from accounts.signals import ShownProfileChange, shown_profile_changed
    from leaderboard.backends.base import BoardKey
    from leaderboard.backends.sql import SqlBoard

    rival = make_user()
    record_update(rival, 50)
    record_update(cheater, 100)
    changes: list[ShownProfileChange] = []

    def receiver(sender: Any, change: ShownProfileChange, **kwargs: Any) -> None:
        changes.append(change)

    shown_profile_changed.connect(receiver, dispatch_uid="tests.moderation.ban")
    try:
        with django_capture_on_commit_callbacks(execute=True):
            outcome = user_ban(user_id=cheater.pk, moderator=moderator, reason="aimbot")
    finally:
        shown_profile_changed.disconnect(dispatch_uid="tests.moderation.ban")

    cheater.refresh_from_db()
    assert outcome.changed
    assert not cheater.is_active
    assert [(change.user_id, change.after["is_active"]) for change in changes] == [
        (cheater.pk, False)
    ]
    assert [standing.user_id for standing in SqlBoard().top(BoardKey(), offset=0, limit=10)] == [
        rival.pk
    ]
    decision = ModerationDecision.objects.get()
    assert (decision.action, decision.user, decision.moderator, decision.reason) == (
        ModerationAction.BAN,
        cheater,
        moderator,
        "aimbot",
    )
    assert decision.score_update is None
    # The totals stay: a ban is not a rejection of the points
    assert all_time_score(cheater) == 100


def test_banning_twice_records_one_ban(
    cheater: User, moderator: User, make_moderator: Callable[..., User]
) -> None:
    first = user_ban(user_id=cheater.pk, moderator=moderator, reason="aimbot")

    again = user_ban(user_id=cheater.pk, moderator=make_moderator(), reason="again")

    assert not again.changed
    assert again.decision == first.decision
    assert ModerationDecision.objects.count() == 1


def test_staff_cannot_be_banned_from_the_queue(
    make_moderator: Callable[..., User], make_user: Callable[..., User], moderator: User
) -> None:
    for target in (make_moderator(), make_user(role=Role.ADMIN)):
        with pytest.raises(Forbidden):
            user_ban(user_id=target.pk, moderator=moderator)
        assert User.objects.get(pk=target.pk).is_active


def test_banning_an_unknown_user_is_user_not_found(moderator: User) -> None:
    with pytest.raises(UserNotFound):
        user_ban(user_id=User().pk, moderator=moderator)


# --- the Moderators group -------------------------------------------------------------------


def test_the_migration_gives_the_group_exactly_the_queues_permissions(
    moderators_group: None,
) -> None:
    group = Group.objects.get(name=MODERATORS_GROUP)

    assert {
        f"{app}.{codename}"
        for app, codename in group.permissions.values_list("content_type__app_label", "codename")
    } == MODERATORS_PERMISSIONS


def test_the_role_decides_membership_of_the_group(
    make_user: Callable[..., User], moderators_group: None
) -> None:
    user = make_user(role=Role.MODERATOR)
    assert list(user.groups.values_list("name", flat=True)) == [MODERATORS_GROUP]
    assert User.objects.get(pk=user.pk).get_all_permissions() == MODERATORS_PERMISSIONS

    user.role = Role.USER
    user.save()
    assert not user.groups.exists()

    user.role = Role.MODERATOR
    user.save(update_fields=["role"])
    assert user.groups.filter(name=MODERATORS_GROUP).exists()

    user.role = Role.ADMIN
    user.save(update_fields=["role"])
    assert not user.groups.exists()


def test_the_players_history_shows_a_reversal_as_rejected_and_counted_rows_add_up(
    player: Any, moderator: User
) -> None:
    from scoring.tests.fixtures import HISTORY_URL

    record_update(player.user, 50)
    update = record_update(player.user, 100, status=ScoreStatus.FLAGGED, reasons=[IP_HOP])
    record_update(player.user, 25, status=ScoreStatus.HELD)
    score_update_reject(update_id=update.pk, moderator=moderator)

    items = player.client.get(HISTORY_URL).json()["data"]["items"]

    assert [(item["scoreIncrement"], item["status"]) for item in items] == [
        (-100, "REJECTED"),
        (25, "PENDING_REVIEW"),
        (100, "REJECTED"),
        (50, "COUNTED"),
    ]
    assert items[0]["previousScore"] == 150
    assert items[0]["newScore"] == 50
    counted = sum(item["scoreIncrement"] for item in items if item["status"] == "COUNTED")
    assert counted == all_time_score(player.user) == 50


def test_the_migration_puts_existing_moderators_in_the_group(
    make_user: Callable[..., User],
) -> None:
    from scoring.tests.moderation_fixtures import ensure_moderators_group

    Group.objects.filter(name=MODERATORS_GROUP).delete()
    moderator = make_user(role=Role.MODERATOR)  # before the group exists
    player = make_user()

    ensure_moderators_group()

    assert list(moderator.groups.values_list("name", flat=True)) == [MODERATORS_GROUP]
    assert not player.groups.exists()
