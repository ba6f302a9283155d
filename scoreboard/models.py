from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

IDEMPOTENCY_KEY_MAX_LENGTH = 255


class IdempotencyRecord(models.Model):
    """The first answer to a POST sent with an `Idempotency-Key` (see scoreboard.idempotency).

    The row is inserted before the handler runs and filled in, in the same transaction, once it
    has answered; outside that transaction a row is therefore always complete.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=IDEMPOTENCY_KEY_MAX_LENGTH)
    # Hex SHA-256 of method, path and raw body: a retry must send the same request.
    fingerprint = models.CharField(max_length=64)
    status_code = models.PositiveSmallIntegerField(null=True)
    # The JSON response body, encrypted with scoreboard.encryption (it may carry secrets).
    encrypted_body = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["user", "key"], name="scoreboard_idempotency_user_key_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.user_id}:{self.key}"
