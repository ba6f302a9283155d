"""Clean-ups a batch per statement: deleting many rows never holds one long transaction, and
an interrupted run keeps what it did (run it again to finish)."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet


def delete_in_batches(rows: QuerySet[Any], *, batch_size: int) -> int:
    """Delete `rows`, at most `batch_size` per transaction; returns how many of the queryset's
    own model were deleted (not counting rows removed with them by cascades)."""
    label = rows.model._meta.label
    deleted = 0
    while batch := list(rows.values_list("pk", flat=True)[:batch_size]):
        deleted += rows.filter(pk__in=batch).delete()[1].get(label, 0)
    return deleted
