"""`score_committed`: sent once a score change is committed, for the leaderboard index and the
live boards. Receivers get everything they need in the event, so they run no queries of their
own to learn what changed. This app imports neither of them."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import date, datetime

from django.db import transaction
from django.dispatch import Signal

logger = logging.getLogger(__name__)

# Sent with sender=ScoreUpdate and event=ScoreCommitted, only after the transaction commits.
score_committed = Signal()


@dataclass(frozen=True)
class PeriodTotal:
    period_start: date
    score: int
    reached_at: datetime
    # Grows by one with every change of this total: index writes apply only newer versions.
    version: int


@dataclass(frozen=True)
class ScoreCommitted:
    score_update_id: uuid.UUID
    user_id: uuid.UUID
    username: str
    country: str
    avatar: str
    # Whether the user may appear on boards (active and not hidden).
    visible: bool
    board: str
    status: str
    score_increment: int
    # The user's totals after the change, per period ("ALL_TIME", "DAILY", ...).
    totals: dict[str, PeriodTotal]
    previous_rank: int | None
    new_rank: int | None
    committed_at: datetime


def announce_on_commit(event: ScoreCommitted) -> None:
    """Send `score_committed` after the current transaction commits (never for a rollback).
    A failing receiver is logged and does not stop the others."""
    from scoring.models import ScoreUpdate

    def send() -> None:
        for receiver, result in score_committed.send_robust(sender=ScoreUpdate, event=event):
            if isinstance(result, Exception):
                logger.error("score_committed receiver %r failed", receiver, exc_info=result)

    transaction.on_commit(send, robust=True)
