"""Archived standings: the final top of each closed day, week and month."""

from __future__ import annotations

import uuid
from typing import ClassVar

from django.db import models

from scoring.periods import DEFAULT_BOARD, Period


class LeaderboardSnapshot(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    board = models.CharField(max_length=50, default=DEFAULT_BOARD)
    period = models.CharField(max_length=10, choices=Period.choices)
    period_start = models.DateField()
    # [{"rank", "userId", "username", "score", "avatar", "country", "lastUpdated"}, ...]
    entries = models.JSONField()
    total_users = models.PositiveIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("-period_start",)
        constraints: ClassVar = [
            models.UniqueConstraint(
                fields=["board", "period", "period_start"], name="snapshot_unique_bucket"
            ),
        ]
        indexes: ClassVar = [
            models.Index(fields=["period", "-created_at"], name="snapshot_period_created"),
        ]

    def __str__(self) -> str:
        return f"{self.board} {self.period} {self.period_start}"
