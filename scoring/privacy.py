"""Personal data in the score pipeline: what an erased player leaves behind, and the retention
rules `manage.py apply_retention` applies (docs/privacy.md).

The audit log stays whole: every `ScoreUpdate` and `ModerationDecision` is kept, linked to
its (anonymised) player, because totals, boards and moderation are accountable to it. What
goes are the network details, the client's address and user agent, and the addresses an
`IP_HOP` risk reason quotes: for an erased player at once, for everyone once an update is
older than `SCOREBOARD_AUDIT_DETAIL_RETENTION_DAYS`. Action tokens are deleted once they
expired more than `SCOREBOARD_ACTION_TOKEN_RETENTION_DAYS` ago; the update that spent one
keeps everything but the link (`action_token` becomes null).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from django.db import transaction
from django.db.models import Q, QuerySet

from scoreboard.batches import delete_in_batches
from scoring.anomaly import ReasonCode
from scoring.models import ActionToken, ScoreUpdate

DEFAULT_BATCH_SIZE = 1000


def _with_details(updates: QuerySet[ScoreUpdate]) -> QuerySet[ScoreUpdate]:
    """The updates that still hold network details. An update with an address-quoting reason
    always has its own address too (the rule needs one), so this finds those as well."""
    return updates.filter(Q(ip_address__isnull=False) | ~Q(user_agent=""))


def _without_addresses(reasons: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
    """The risk reasons with the addresses an IP_HOP detail quotes taken out; None when none
    quotes any. The rule's figures (weight, observed seconds, limit) stay."""
    if not any(reason.get("code") == ReasonCode.IP_HOP for reason in reasons):
        return None
    return [
        {
            **reason,
            "detail": f"Another address {reason.get('observed', 0):g} s after the previous "
            "update (addresses removed).",
        }
        if reason.get("code") == ReasonCode.IP_HOP
        else reason
        for reason in reasons
    ]


def _details_clear(updates: QuerySet[ScoreUpdate], *, batch_size: int) -> int:
    """Clear the network details of `updates`, a transaction per batch, walking the primary
    key so that no batch scans the rows an earlier one cleared; returns how many changed."""
    pending = _with_details(updates).order_by("pk")
    cleared = 0
    after: uuid.UUID | None = None
    while True:
        page = pending if after is None else pending.filter(pk__gt=after)
        rows = list(page.values_list("pk", "risk_reasons")[:batch_size])
        if not rows:
            return cleared
        after = rows[-1][0]
        redacted = [
            ScoreUpdate(pk=pk, risk_reasons=kept)
            for pk, reasons in rows
            if (kept := _without_addresses(reasons)) is not None
        ]
        with transaction.atomic():
            cleared += ScoreUpdate.objects.filter(pk__in=[pk for pk, _ in rows]).update(
                ip_address=None, user_agent=""
            )
            ScoreUpdate.objects.bulk_update(redacted, ["risk_reasons"])


def user_scoring_anonymise(*, user_id: uuid.UUID) -> None:
    """What erasing a player (accounts.services.user_erase) does to the score pipeline, in
    the caller's transaction: their updates lose their network details, and action tokens
    not yet spent stop working. Totals, updates (pending reviews too) and decisions stay."""
    _details_clear(ScoreUpdate.objects.filter(user_id=user_id), batch_size=DEFAULT_BATCH_SIZE)
    ActionToken.objects.filter(user_id=user_id, used_at__isnull=True, is_valid=True).update(
        is_valid=False
    )


def audit_details_prune(
    *, before: datetime, batch_size: int = DEFAULT_BATCH_SIZE, dry_run: bool = False
) -> int:
    """Clear the network details of every update recorded before `before`; returns how many
    updates held some (and, unless `dry_run`, no longer do). Running it again finds none."""
    old = ScoreUpdate.objects.filter(created_at__lt=before)
    if dry_run:
        return _with_details(old).count()
    return _details_clear(old, batch_size=batch_size)


def action_tokens_prune(
    *, before: datetime, batch_size: int = DEFAULT_BATCH_SIZE, dry_run: bool = False
) -> int:
    """Delete the action tokens that expired before `before`, spent or not (a token is spent
    before it expires); returns how many. The updates that spent them stay, unlinked."""
    expired = ActionToken.objects.filter(expires_at__lt=before)
    if dry_run:
        return expired.count()
    return delete_in_batches(expired, batch_size=batch_size)
