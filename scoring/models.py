"""The action catalog, game-server credentials, one-time action tokens, the score audit log
and the totals it feeds, and the moderators' decisions about it.

`ScoreUpdate` is append-only: the source of truth for every point. A moderator's decision
records itself on the row it judges (status, who, when) and never deletes one: a rejected
update that had counted is cancelled by a compensating REVERSAL row. `ScoreTotal` holds, per
(board, period, period start, user), the running total the boards rank; it is written in the
same transaction as the audit row that changes it. `ModerationDecision` is the append-only
log of every decision (approve, reject, ban).
"""

from __future__ import annotations

import uuid
from typing import ClassVar

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.db.models import Q

from scoring.periods import DEFAULT_BOARD, Period

ACTION_TYPE_PATTERN = r"^[A-Z][A-Z0-9_]{1,49}\Z"
MAX_SCORE_INCREMENT = 1000
USER_AGENT_MAX_LENGTH = 512


class Action(models.Model):
    """A kind of action players complete, and what it is worth. Points always come from here,
    never from the client."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    action_type = models.CharField(
        max_length=50,
        unique=True,
        validators=[RegexValidator(ACTION_TYPE_PATTERN, "Upper-case letters, digits and _.")],
    )
    base_points = models.PositiveIntegerField(
        validators=[MinValueValidator(1), MaxValueValidator(MAX_SCORE_INCREMENT)]
    )
    description = models.TextField(blank=True)
    is_active = models.BooleanField(default=True)
    min_duration_seconds = models.PositiveIntegerField(
        default=0, help_text="Completing faster than this is suspicious (anti-cheat)."
    )
    daily_cap_per_user = models.PositiveIntegerField(
        null=True, blank=True, help_text="Completions per player per UTC day; empty for no cap."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("action_type",)
        constraints: ClassVar = [
            models.CheckConstraint(
                condition=Q(base_points__gte=1) & Q(base_points__lte=MAX_SCORE_INCREMENT),
                name="action_base_points_range",
            ),
        ]

    def __str__(self) -> str:
        return self.action_type


class GameServer(models.Model):
    """A game server allowed to vouch for completed actions. Its HMAC secret is stored
    encrypted (verifying an HMAC needs the secret itself, so it cannot be hashed)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=100, unique=True)
    key_id = models.CharField(max_length=64, unique=True)
    secret_encrypted = models.TextField()
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("name",)

    def __str__(self) -> str:
        return f"{self.name} ({self.key_id})"


class ActionToken(models.Model):
    """A one-time permission to score one completed action. Only the token's SHA-256 is kept."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="action_tokens"
    )
    action_type = models.ForeignKey(
        Action,
        on_delete=models.PROTECT,
        to_field="action_type",
        db_column="action_type",
        related_name="tokens",
    )
    action_id = models.UUIDField(unique=True)
    game_server = models.ForeignKey(
        GameServer, on_delete=models.PROTECT, related_name="action_tokens"
    )
    token_hash = models.CharField(max_length=64, unique=True)
    points = models.PositiveIntegerField()
    completed_at = models.DateTimeField(help_text="When the game server says it happened.")
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)
    is_valid = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes: ClassVar = [
            models.Index(
                fields=["user", "action_type", "created_at"], name="actiontoken_user_action"
            ),
            models.Index(fields=["expires_at"], name="actiontoken_expires_at"),
        ]

    def __str__(self) -> str:
        return f"{self.action_id} ({self.user_id})"


class ScoreStatus(models.TextChoices):
    COUNTED = "COUNTED", "Counted"
    FLAGGED = "FLAGGED", "Counted, flagged for review"
    HELD = "HELD", "Held for review (not counted)"
    REJECTED = "REJECTED", "Rejected by a moderator"
    # A moderator's compensating entry: takes a rejected update's points back out of the
    # totals it had counted in (negative increment; `reverses` names the update).
    REVERSAL = "REVERSAL", "Reversal of a rejected update"


# Statuses waiting for a moderator: the review queue.
REVIEW_STATUSES = (ScoreStatus.FLAGGED, ScoreStatus.HELD)


class ReviewDecision(models.TextChoices):
    APPROVED = "APPROVED", "Approved"
    REJECTED = "REJECTED", "Rejected"


REVIEW_REASON_MAX_LENGTH = 500


class ScoreUpdate(models.Model):
    """One change to a player's score: the append-only audit log and source of truth."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="score_updates"
    )
    board = models.CharField(max_length=50, default=DEFAULT_BOARD)
    action_type = models.CharField(max_length=50)
    action_id = models.UUIDField()
    # SET_NULL: `apply_retention` deletes spent tokens after a while; the update stays.
    action_token = models.OneToOneField(
        ActionToken,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="score_update",
    )
    score_increment = models.IntegerField()
    previous_score = models.BigIntegerField()
    new_score = models.BigIntegerField()
    previous_rank = models.PositiveIntegerField(null=True, blank=True)
    new_rank = models.PositiveIntegerField(null=True, blank=True)
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=USER_AGENT_MAX_LENGTH, blank=True)
    client_timestamp = models.DateTimeField(null=True, blank=True)
    verified = models.BooleanField(default=False)
    status = models.CharField(
        max_length=10, choices=ScoreStatus.choices, default=ScoreStatus.COUNTED
    )
    risk_reasons = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField()
    # The last moderator's decision about this update. The moderator is SET_NULL so that
    # erasing their account keeps the decision (ModerationDecision has the full log).
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="reviewed_score_updates",
    )
    reviewed_at = models.DateTimeField(null=True, blank=True)
    review_decision = models.CharField(
        max_length=8, choices=ReviewDecision.choices, blank=True, default=""
    )
    review_reason = models.CharField(max_length=REVIEW_REASON_MAX_LENGTH, blank=True, default="")
    # Set on a REVERSAL row: the rejected update it cancels. One-to-one, so an update can be
    # reverted at most once whatever happens above the database.
    reverses = models.OneToOneField(
        "self", on_delete=models.PROTECT, null=True, blank=True, related_name="reversal"
    )

    class Meta:
        ordering = ("-created_at", "-id")
        indexes: ClassVar = [
            models.Index(fields=["user", "-created_at", "-id"], name="scoreupdate_user_history"),
            models.Index(fields=["-created_at"], name="scoreupdate_created_at"),
            models.Index(fields=["action_id"], name="scoreupdate_action_id"),
            models.Index(
                fields=["status", "-created_at"],
                name="scoreupdate_review_queue",
                condition=Q(status__in=[ScoreStatus.FLAGGED, ScoreStatus.HELD]),
            ),
            models.Index(
                fields=["-reviewed_at"],
                name="scoreupdate_reviewed",
                condition=Q(reviewed_at__isnull=False),
            ),
        ]
        constraints: ClassVar = [
            # A REVERSAL row always names what it reverses, and nothing else does.
            models.CheckConstraint(
                condition=(Q(status=ScoreStatus.REVERSAL) & Q(reverses__isnull=False))
                | (~Q(status=ScoreStatus.REVERSAL) & Q(reverses__isnull=True)),
                name="scoreupdate_reversal_names_its_update",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.action_type} {self.score_increment:+d} ({self.user_id})"


class ScoreTotal(models.Model):
    """A player's running total on one board for one period bucket.

    `reached_at` is when the total last changed: among equal totals, who got there first is
    listed first.
    """

    id = models.BigAutoField(primary_key=True)
    board = models.CharField(max_length=50, default=DEFAULT_BOARD)
    period = models.CharField(max_length=10, choices=Period.choices)
    period_start = models.DateField()
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="score_totals"
    )
    score = models.BigIntegerField(default=0)
    reached_at = models.DateTimeField()
    # Grows by one with every change, so index writes can be applied in order and only once.
    version = models.PositiveBigIntegerField(default=1)

    class Meta:
        constraints: ClassVar = [
            models.UniqueConstraint(
                fields=["board", "period", "period_start", "user"], name="scoretotal_unique"
            ),
        ]
        indexes: ClassVar = [
            # Top-N is an index scan; rank is a count over the entries above a score.
            models.Index(
                fields=["board", "period", "period_start", "-score", "reached_at", "user"],
                name="scoretotal_ranking",
            ),
            models.Index(fields=["user", "board", "period"], name="scoretotal_user"),
            # Index catch-up after a rebuild: the totals changed since a moment.
            models.Index(fields=["reached_at"], name="scoretotal_reached_at"),
        ]

    def __str__(self) -> str:
        return f"{self.board}/{self.period}/{self.period_start}: {self.score} ({self.user_id})"


class ReviewItem(ScoreUpdate):
    """The moderation queue's view of score updates (flagged, held and decided ones). A proxy,
    so the queue has permissions of its own: the Moderators group may view and decide on
    queue items and ban players without any right to edit the audit log."""

    class Meta:
        proxy = True
        verbose_name = "moderation queue item"
        verbose_name_plural = "moderation queue"
        permissions: ClassVar = [("ban_player", "Can ban a player from the moderation queue")]


class ModerationAction(models.TextChoices):
    APPROVE = "APPROVE", "Approve"
    REJECT = "REJECT", "Reject"
    BAN = "BAN", "Ban player"


class ModerationDecision(models.Model):
    """One moderator decision: the append-only audit log of the moderation path.

    `points` is what the decision changed the player's totals by (the approved points, minus
    the reverted ones, 0 for a cleared flag, a discarded hold or a ban). The moderator is
    SET_NULL: erasing their account keeps the decision and when it was taken.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    action = models.CharField(max_length=10, choices=ModerationAction.choices)
    moderator = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="moderation_decisions_taken",
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="moderation_decisions"
    )
    score_update = models.ForeignKey(
        ScoreUpdate,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="decisions",
    )
    previous_status = models.CharField(max_length=10, choices=ScoreStatus.choices, blank=True)
    new_status = models.CharField(max_length=10, choices=ScoreStatus.choices, blank=True)
    points = models.IntegerField(default=0)
    reason = models.CharField(max_length=REVIEW_REASON_MAX_LENGTH, blank=True, default="")
    created_at = models.DateTimeField()

    class Meta:
        ordering = ("-created_at", "-id")
        indexes: ClassVar = [
            models.Index(fields=["-created_at"], name="moderation_created_at"),
            models.Index(fields=["user", "-created_at"], name="moderation_user"),
        ]

    def __str__(self) -> str:
        return f"{self.action} {self.user_id} at {self.created_at:%Y-%m-%d %H:%M:%S}"
