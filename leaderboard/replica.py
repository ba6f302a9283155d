"""Which database the REST board reads use: the `replica` alias when DATABASE_REPLICA_URL
configures one, else `default` (docs/leaderboards.md, "Read replica").

No database router: only the reads that call `read_with_failover` go to the replica, by name.
Writes, reads in write paths, the live boards and the operations commands stay on `default`,
which has every commit the moment it is made.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, InterfaceError, OperationalError, connections

logger = logging.getLogger(__name__)

T = TypeVar("T")

REPLICA = "replica"
# After a failed replica read, reads go to the primary this long before the replica is tried
# again: an unreachable PostgreSQL costs a whole DB_POOL_TIMEOUT per attempt.
REPLICA_RETRY_SECONDS = 10.0
REPLICA_OUTAGES = (OperationalError, InterfaceError)

_replica_failed_at: float | None = None


def board_read_database() -> str:
    """`replica` when one is configured and usable, else `default`. Inside a transaction on
    `default` the read stays there: it must see that transaction's writes."""
    if REPLICA not in settings.DATABASES or connections[DEFAULT_DB_ALIAS].in_atomic_block:
        return DEFAULT_DB_ALIAS
    if (
        _replica_failed_at is not None
        and time.monotonic() - _replica_failed_at < REPLICA_RETRY_SECONDS
    ):
        return DEFAULT_DB_ALIAS
    return REPLICA


def read_with_failover(read: Callable[[str], T]) -> T:
    """`read(alias)` on the database `board_read_database` picks; if that is the replica and
    it fails, once more on the primary, which carries the reads until the retry delay ends."""
    global _replica_failed_at
    database = board_read_database()
    if database == DEFAULT_DB_ALIAS:
        return read(database)
    try:
        return read(database)
    except REPLICA_OUTAGES as error:
        _replica_failed_at = time.monotonic()
        logger.warning(
            "Read replica unavailable, board reads use the primary for %.0f s: %r",
            REPLICA_RETRY_SECONDS,
            error,
        )
        return read(DEFAULT_DB_ALIAS)
