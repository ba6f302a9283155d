"""Moderation: the one write path for decisions about score updates and players, and the
reads of the review queue. The Django admin and the API both call these functions.

Decisions (DESIGN.md §6):

* approve: HELD → COUNTED, its points added now to the period buckets of the moment it was
  made (`created_at`: a hold from yesterday approved today counts in yesterday's day);
  FLAGGED → COUNTED, the flag cleared, totals untouched.
* reject: COUNTED or FLAGGED → REJECTED, its points taken out of the same buckets by a
  compensating REVERSAL row; HELD → REJECTED, discarded, totals untouched.
* ban: the player is deactivated; the accounts signal removes them from every board and
  live channel.

Each decision locks the row it changes (`SELECT … FOR UPDATE`; SQLite transactions begin
IMMEDIATE, which serialises them), so of concurrent decisions on one update each sees the
outcome of the one before: approving twice counts once, rejecting twice reverts once (the
second call returns the first's outcome), and the database allows one reversal per update.
Every decision records who and when on the update and appends a `ModerationDecision`; a
totals change is announced with `score_committed` after commit, with the totals' new
versions, so the board index and the live boards follow.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import transaction
from django.db.models import OuterRef, Q, QuerySet, Subquery
from django.utils import timezone

from accounts.models import Role, User
from leaderboard.selectors import all_time_ranks
from scoreboard import metrics
from scoreboard.errors import Forbidden
from scoring.exceptions import DecisionConflict, ScoreUpdateNotFound, UserNotFound
from scoring.models import (
    REVIEW_STATUSES,
    ModerationAction,
    ModerationDecision,
    ReviewDecision,
    ScoreStatus,
    ScoreTotal,
    ScoreUpdate,
)
from scoring.periods import ALL_TIME_START, Period, period_starts
from scoring.services import score_committed_announce, score_totals_shift
from scoring.signals import PeriodTotal

logger = logging.getLogger(__name__)

# What a moderator needs for each kind of act (the Moderators group holds exactly these).
VIEW_QUEUE_PERMISSION = "scoring.view_reviewitem"
DECIDE_PERMISSION = "scoring.change_reviewitem"
BAN_PERMISSION = "scoring.ban_player"


# --- who may moderate -----------------------------------------------------------------------


def can_moderate(user: Any, permission: str = DECIDE_PERMISSION) -> bool:
    """The admin site's own rule, for the API too: an active staff user (the role decides
    staff) holding the permission (moderators through the Moderators group, admins as
    superusers). A moderator taken out of the group, or a player put into it, cannot."""
    return isinstance(user, User) and user.is_active and user.is_staff and user.has_perm(permission)


def check_moderator(user: Any, permission: str = DECIDE_PERMISSION) -> None:
    if not can_moderate(user, permission):
        raise Forbidden("Only moderators may do this.")


# --- outcomes -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReviewOutcome:
    """Where an update stands after a decision call. `changed` is False when the call found
    the decision already taken and did nothing; `decision` is then the earlier one."""

    score_update: ScoreUpdate
    decision: ModerationDecision
    changed: bool
    reversal: ScoreUpdate | None = None


@dataclass(frozen=True)
class BanOutcome:
    user: User
    decision: ModerationDecision
    changed: bool


# --- decisions on score updates -------------------------------------------------------------


def score_update_approve(
    *, update_id: uuid.UUID, moderator: User, reason: str = ""
) -> ReviewOutcome:
    """Approve a held update (its points count now) or clear a flagged one (it stays
    counted). Approving an approved update again changes nothing; approving a rejected one,
    a reversal entry or an update that never was in review is a conflict."""
    check_moderator(moderator)
    with transaction.atomic():
        update = _locked_update(update_id)
        now = timezone.now()  # after the lock: decisions are stamped in the order they apply
        if update.status == ScoreStatus.COUNTED and update.review_decision == (
            ReviewDecision.APPROVED
        ):
            return _unchanged(update, ModerationAction.APPROVE)
        if update.status == ScoreStatus.HELD:
            user = _locked_player(update)
            totals, ranks = _shift_totals(
                user=user, update=update, points=update.score_increment, at=now
            )
            # The row now tells when its points counted: the scores and ranks around that.
            update.previous_score, update.new_score = totals.previous_score, totals.new_score
            update.previous_rank, update.new_rank = ranks
            update.status = ScoreStatus.COUNTED
            _review(update, ReviewDecision.APPROVED, moderator=moderator, at=now, reason=reason)
            update.save(update_fields=[*_REVIEW_FIELDS, *_SCORE_FIELDS, "status"])
            decision = _decide(
                ModerationAction.APPROVE,
                update=update,
                moderator=moderator,
                previous_status=ScoreStatus.HELD,
                points=update.score_increment,
                reason=reason,
                at=now,
            )
            score_committed_announce(
                user=user, update=update, totals=totals.totals, ranks=ranks, at=now
            )
            return ReviewOutcome(score_update=update, decision=decision, changed=True)
        if update.status == ScoreStatus.FLAGGED:
            return _status_decided(
                update,
                ModerationAction.APPROVE,
                status=ScoreStatus.COUNTED,
                moderator=moderator,
                reason=reason,
                at=now,
            )
    raise DecisionConflict(_conflict_message(update, "approved"))


def score_update_reject(
    *, update_id: uuid.UUID, moderator: User, reason: str = ""
) -> ReviewOutcome:
    """Reject an update: one that counted (flagged, counted or approved) is reverted by a
    compensating REVERSAL row that takes exactly its points out of the buckets it counted in;
    a held one is discarded. Rejecting a rejected update again changes nothing; a reversal
    entry cannot be rejected."""
    check_moderator(moderator)
    with transaction.atomic():
        update = _locked_update(update_id)
        now = timezone.now()  # after the lock: decisions are stamped in the order they apply
        if update.status == ScoreStatus.REJECTED:
            return _unchanged(update, ModerationAction.REJECT)
        if update.status == ScoreStatus.HELD:
            return _status_decided(
                update,
                ModerationAction.REJECT,
                status=ScoreStatus.REJECTED,
                moderator=moderator,
                reason=reason,
                at=now,
            )
        if update.status in (ScoreStatus.COUNTED, ScoreStatus.FLAGGED):
            user = _locked_player(update)
            previous_status = update.status
            points = update.score_increment
            totals, ranks = _shift_totals(user=user, update=update, points=-points, at=now)
            reversal = ScoreUpdate.objects.create(
                user=user,
                board=update.board,
                action_type=update.action_type,
                action_id=update.action_id,
                score_increment=-points,
                previous_score=totals.previous_score,
                new_score=totals.new_score,
                previous_rank=ranks[0],
                new_rank=ranks[1],
                verified=False,
                status=ScoreStatus.REVERSAL,
                reverses=update,
                created_at=now,
            )
            update.status = ScoreStatus.REJECTED
            _review(update, ReviewDecision.REJECTED, moderator=moderator, at=now, reason=reason)
            update.save(update_fields=[*_REVIEW_FIELDS, "status"])
            decision = _decide(
                ModerationAction.REJECT,
                update=update,
                moderator=moderator,
                previous_status=previous_status,
                points=-points,
                reason=reason,
                at=now,
            )
            score_committed_announce(
                user=user, update=reversal, totals=totals.totals, ranks=ranks, at=now
            )
            return ReviewOutcome(
                score_update=update, decision=decision, changed=True, reversal=reversal
            )
    raise DecisionConflict(_conflict_message(update, "rejected"))


_REVIEW_FIELDS = ("reviewed_by", "reviewed_at", "review_decision", "review_reason")
_SCORE_FIELDS = ("previous_score", "new_score", "previous_rank", "new_rank")


def _locked_player(update: ScoreUpdate) -> User:
    """The update's player, row locked before any of their totals: a score update locks the
    player first and their totals after, and taking them the other way round deadlocks with
    it (the reversal's and the decision's foreign keys would wait on the player's row while
    holding the totals a score update waits for)."""
    return User.objects.select_for_update().get(pk=update.user_id)


def _locked_update(update_id: uuid.UUID) -> ScoreUpdate:
    update = ScoreUpdate.objects.select_for_update().filter(pk=update_id).first()
    if update is None:
        raise ScoreUpdateNotFound()
    return update


def _unchanged(update: ScoreUpdate, action: str) -> ReviewOutcome:
    decision = update.decisions.filter(action=action).order_by("-created_at").first()
    if decision is None:  # decided before the decision log existed, or by hand
        raise DecisionConflict(_conflict_message(update, "decided"))
    return ReviewOutcome(
        score_update=update,
        decision=decision,
        changed=False,
        reversal=ScoreUpdate.objects.filter(reverses=update).first(),
    )


def _conflict_message(update: ScoreUpdate, wanted: str) -> str:
    if update.status == ScoreStatus.REVERSAL:
        return "A reversal entry is a moderator's own record; it cannot be decided on."
    if update.status == ScoreStatus.REJECTED:
        return f"The update was rejected; it cannot be {wanted}."
    if update.status == ScoreStatus.COUNTED and not update.review_decision:
        return "The update is not awaiting review."
    return f"The update is {update.status.lower()}; it cannot be {wanted}."


def _review(
    update: ScoreUpdate, decision: str, *, moderator: User, at: datetime, reason: str
) -> None:
    update.review_decision = decision
    update.reviewed_by = moderator
    update.reviewed_at = at
    update.review_reason = reason


def _status_decided(
    update: ScoreUpdate,
    action: str,
    *,
    status: str,
    moderator: User,
    reason: str,
    at: datetime,
) -> ReviewOutcome:
    """A decision that only moves the update to `status`, no points (approving a flagged
    update, which already counted; rejecting a held one, which never did)."""
    previous_status = update.status
    update.status = status
    review_decision = (
        ReviewDecision.APPROVED if action == ModerationAction.APPROVE else ReviewDecision.REJECTED
    )
    _review(update, review_decision, moderator=moderator, at=at, reason=reason)
    update.save(update_fields=[*_REVIEW_FIELDS, "status"])
    decision = _decide(
        action,
        update=update,
        moderator=moderator,
        previous_status=previous_status,
        points=0,
        reason=reason,
        at=at,
    )
    return ReviewOutcome(score_update=update, decision=decision, changed=True)


def _decide(
    action: str,
    *,
    update: ScoreUpdate,
    moderator: User,
    previous_status: str,
    points: int,
    reason: str,
    at: datetime,
) -> ModerationDecision:
    decision = ModerationDecision.objects.create(
        action=action,
        moderator=moderator,
        user_id=update.user_id,
        score_update=update,
        previous_status=previous_status,
        new_status=update.status,
        points=points,
        reason=reason,
        created_at=at,
    )
    metrics.MODERATION_DECISIONS.labels(action=action).inc()
    logger.info(
        "moderation: %s of score update %s (%s → %s, %+d points) by %s",
        action,
        update.pk,
        previous_status,
        update.status,
        points,
        moderator.pk,
    )
    return decision


# --- totals ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ShiftedTotals:
    totals: dict[str, PeriodTotal]
    previous_score: int  # all time, before
    new_score: int  # all time, after


def _shift_totals(
    *, user: User, update: ScoreUpdate, points: int, at: datetime
) -> tuple[ShiftedTotals, tuple[int | None, int | None]]:
    """Add `points` (negative: subtract) to the user's totals in the buckets `update` was made
    in; returns the new totals with the all-time score and rank before and after."""
    # The player's row is locked already; then all time first: the lock order of
    # score_update_apply, so the two cannot deadlock.
    previous_score = (
        ScoreTotal.objects.select_for_update()
        .filter(
            board=update.board,
            period=Period.ALL_TIME,
            period_start=ALL_TIME_START,
            user_id=user.pk,
        )
        .values_list("score", flat=True)
        .first()
    ) or 0
    totals = score_totals_shift(
        user_id=user.pk,
        board=update.board,
        starts=period_starts(update.created_at),
        points=points,
        now=at,
    )
    new_score = totals[Period.ALL_TIME].score
    if new_score != previous_score + points:
        logger.warning(
            "Totals of %s were below the points reverted (%d - %d); floored at 0.",
            user.pk,
            previous_score,
            -points,
        )
    previous_rank, new_rank = all_time_ranks(
        user=user, scores=[previous_score, new_score], board=update.board
    )
    return ShiftedTotals(totals, previous_score, new_score), (previous_rank, new_rank)


def user_ban(*, user_id: uuid.UUID, moderator: User, reason: str = "") -> BanOutcome:
    """Deactivate a player: they can no longer sign in or use their tokens, and the accounts
    signal takes them off every board and live channel after commit. Banning a banned player
    again changes nothing. Staff are not banned here: an admin changes their role."""
    check_moderator(moderator, BAN_PERMISSION)
    with transaction.atomic():
        user = User.objects.select_for_update().filter(pk=user_id).first()
        now = timezone.now()
        if user is None:
            raise UserNotFound()
        if user.role != Role.USER:
            raise Forbidden("Moderators and admins cannot be banned from the moderation queue.")
        if not user.is_active:
            earlier = (
                ModerationDecision.objects.filter(user=user, action=ModerationAction.BAN)
                .order_by("-created_at")
                .first()
            )
            if earlier is not None:
                return BanOutcome(user=user, decision=earlier, changed=False)
        else:
            user.is_active = False
            user.save(update_fields=["is_active"])
        decision = ModerationDecision.objects.create(
            action=ModerationAction.BAN,
            moderator=moderator,
            user=user,
            reason=reason,
            created_at=now,
        )
    metrics.MODERATION_DECISIONS.labels(action=ModerationAction.BAN).inc()
    logger.info("moderation: BAN of user %s by %s", user.pk, moderator.pk)
    return BanOutcome(user=user, decision=decision, changed=True)


# --- reads: the queue -----------------------------------------------------------------------


def reason_codes(risk_reasons: Any) -> list[str]:
    """The reason codes in an update's `risk_reasons` (objects with a `code`, written by
    scoring.anomaly)."""
    codes = []
    for reason in risk_reasons if isinstance(risk_reasons, list) else []:
        code = reason.get("code") if isinstance(reason, dict) else None
        if isinstance(code, str) and code:
            codes.append(code)
    return codes


def with_reason(queryset: QuerySet[Any], code: str) -> QuerySet[Any]:
    """Updates whose risk reasons include `code`. Matched in the JSON text, where both
    SQLite (as Django wrote it) and PostgreSQL (jsonb's text form) hold `"code": "<code>"`;
    the JSON containment lookup would not work on SQLite."""
    return queryset.filter(risk_reasons__icontains=f'"code": "{code}"')


def review_queue(
    *,
    statuses: Iterable[str] = REVIEW_STATUSES,
    reason: str | None = None,
    action_type: str | None = None,
) -> QuerySet[ScoreUpdate]:
    """Updates waiting for a moderator (flagged and held), newest first, with their player
    and the player's all-time total (`player_score`)."""
    queue = with_player_score(
        ScoreUpdate.objects.filter(status__in=list(statuses)).select_related("user")
    )
    if reason:
        queue = with_reason(queue, reason)
    if action_type:
        queue = queue.filter(action_type=action_type)
    return queue.order_by("-created_at", "-id")


def with_player_score(queryset: QuerySet[Any]) -> QuerySet[Any]:
    return queryset.annotate(
        player_score=Subquery(
            ScoreTotal.objects.filter(
                board=OuterRef("board"),
                period=Period.ALL_TIME,
                period_start=ALL_TIME_START,
                user_id=OuterRef("user_id"),
            ).values("score")[:1]
        )
    )


def reviewed_or_in_review() -> Q:
    """What the admin's queue can list: waiting, or decided by a moderator."""
    return Q(status__in=REVIEW_STATUSES) | Q(reviewed_at__isnull=False)


def user_current_totals(*, user_id: uuid.UUID, board: str) -> dict[str, int]:
    """The player's totals in the buckets of now, by period (0 where they have none)."""
    starts = period_starts(timezone.now())
    condition = Q(pk__in=[])
    for period, start in starts.items():
        condition |= Q(period=period, period_start=start)
    found = dict(
        ScoreTotal.objects.filter(condition, user_id=user_id, board=board).values_list(
            "period", "score"
        )
    )
    return {period: int(found.get(period, 0)) for period in starts}


def user_recent_updates(*, user_id: uuid.UUID, limit: int = 20) -> list[ScoreUpdate]:
    return list(
        ScoreUpdate.objects.filter(user_id=user_id)
        .select_related("reviewed_by")
        .order_by("-created_at", "-id")[:limit]
    )
