"""Reads for the score pipeline."""

from __future__ import annotations

import uuid
from datetime import date

from django.db.models import QuerySet

from accounts.models import on_leaderboards
from scoring.models import Action, ScoreTotal, ScoreUpdate
from scoring.periods import ALL_TIME_START, DEFAULT_BOARD, Period


def action_active_by_type(action_type: str) -> Action | None:
    return Action.objects.filter(action_type=action_type, is_active=True).first()


def visible_totals(*, board: str = DEFAULT_BOARD) -> QuerySet[ScoreTotal]:
    """The totals boards show: above zero, of players on the leaderboards."""
    return ScoreTotal.objects.filter(on_leaderboards("user__"), board=board, score__gt=0)


def rank_for_score(
    *,
    score: int,
    board: str = DEFAULT_BOARD,
    period: str = Period.ALL_TIME,
    start: date = ALL_TIME_START,
    excluding_user_id: uuid.UUID | None = None,
) -> int | None:
    """Competition rank of a total: 1 + the visible entries with a strictly higher score.

    Totals of zero or less are not ranked.
    """
    if score <= 0:
        return None
    entries_above = visible_totals(board=board).filter(
        period=period, period_start=start, score__gt=score
    )
    if excluding_user_id is not None:
        entries_above = entries_above.exclude(user_id=excluding_user_id)
    return 1 + entries_above.count()


def score_updates_for_user(*, user_id: uuid.UUID) -> QuerySet[ScoreUpdate]:
    """The user's audit rows, newest first."""
    return ScoreUpdate.objects.filter(user_id=user_id).order_by("-created_at", "-id")
