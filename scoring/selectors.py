"""Reads for the score pipeline."""

from __future__ import annotations

import uuid
from datetime import datetime

from django.db.models import Q, QuerySet

from accounts.models import on_leaderboards
from scoring.anomaly import HISTORY_LIMIT, Completion
from scoring.models import Action, ActionToken, ModerationDecision, ScoreTotal, ScoreUpdate
from scoring.periods import ALL_TIME_START, DEFAULT_BOARD, Period


def action_active_by_type(action_type: str) -> Action | None:
    return Action.objects.filter(action_type=action_type, is_active=True).first()


def visible_totals(*, board: str = DEFAULT_BOARD) -> QuerySet[ScoreTotal]:
    """The totals boards show: above zero, of players on the leaderboards."""
    return ScoreTotal.objects.filter(on_leaderboards("user__"), board=board, score__gt=0)


def score_total_all_time(*, user_id: uuid.UUID, board: str = DEFAULT_BOARD) -> int:
    """The user's all-time total on `board` (0 before their first counted update)."""
    score = (
        ScoreTotal.objects.filter(
            board=board, period=Period.ALL_TIME, period_start=ALL_TIME_START, user_id=user_id
        )
        .values_list("score", flat=True)
        .first()
    )
    return int(score or 0)


def completions_recent(
    *, user_id: uuid.UUID, since: datetime, action_type: str, same_type_since: datetime
) -> list[Completion]:
    """The user's completed actions (updates that spent an action token) recorded from `since`
    on, plus those of `action_type` from `same_type_since` on; newest first, whatever their
    review status. Moderators' compensating entries have no token and are left out.

    One query, a range scan of the (user, -created_at) index joined to each row's token.
    """
    rows = ScoreUpdate.objects.filter(
        user_id=user_id,
        created_at__gte=min(since, same_type_since),
        action_token__isnull=False,
        score_increment__gt=0,
    )
    if same_type_since < since:
        rows = rows.filter(Q(created_at__gte=since) | Q(action_type=action_type))
    return [
        Completion(
            action_type=row_type,
            points=points,
            ip_address=ip_address,
            recorded_at=recorded_at,
            completed_at=completed_at,
            issued_at=issued_at,
        )
        for row_type, points, ip_address, recorded_at, completed_at, issued_at in rows.order_by(
            "-created_at", "-id"
        ).values_list(
            "action_type",
            "score_increment",
            "ip_address",
            "created_at",
            "action_token__completed_at",
            "action_token__created_at",
        )[:HISTORY_LIMIT]
    ]


def score_updates_for_user(*, user_id: uuid.UUID) -> QuerySet[ScoreUpdate]:
    """The user's audit rows, newest first."""
    return ScoreUpdate.objects.filter(user_id=user_id).order_by("-created_at", "-id")


def score_totals_for_user(*, user_id: uuid.UUID) -> QuerySet[ScoreTotal]:
    """Every total of the user, on every board and in every period bucket."""
    return ScoreTotal.objects.filter(user_id=user_id).order_by("board", "period", "-period_start")


def action_tokens_for_user(*, user_id: uuid.UUID) -> QuerySet[ActionToken]:
    """The user's action tokens still kept (`apply_retention` deletes old ones), newest first."""
    return ActionToken.objects.filter(user_id=user_id).order_by("-created_at", "-id")


def moderation_decisions_about_user(*, user_id: uuid.UUID) -> QuerySet[ModerationDecision]:
    """Moderators' decisions about the user's updates and account, newest first."""
    return ModerationDecision.objects.filter(user_id=user_id).order_by("-created_at", "-id")


def moderation_decisions_by_user(*, user_id: uuid.UUID) -> QuerySet[ModerationDecision]:
    """The decisions the user took as a moderator, newest first."""
    return ModerationDecision.objects.filter(moderator_id=user_id).order_by("-created_at", "-id")
