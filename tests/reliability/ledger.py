"""The ledger check every scenario ends with: nothing a client was told was accepted is lost.

* every 200 a client saw is exactly one counted ScoreUpdate row (COUNTED or FLAGGED);
* each player's all-time total equals the sum of their counted rows;
* no action token was spent twice (one ScoreUpdate row per token at most);
* the Redis index of each board equals the database's standings, in order.

It reads the cluster's PostgreSQL database and Redis directly, as an auditor would.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, cast

import psycopg
import redis

from leaderboard.backends.redis import decode_member
from realtime.tests.cluster import Cluster

COUNTED = ("COUNTED", "FLAGGED")
ALL_TIME_SET = "lb:global:ALL_TIME:1970-01-01"


@dataclass
class Outcomes:
    """What the clients of one scenario sent and were answered. Thread-safe."""

    sent: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    # (user id, action id) of every update answered 200.
    accepted: list[tuple[str, str]] = field(default_factory=list)
    unexpected: list[tuple[int, Any]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(
        self, status: int, body: Any, *, user_id: str, action_id: str, allowed: tuple[int, ...]
    ) -> None:
        """One score update's answer; statuses outside `allowed` (and 200) are unexpected."""
        with self._lock:
            self.sent += 1
            self.statuses[status] += 1
            if status == 200:
                self.accepted.append((user_id, action_id))
            elif status not in allowed:
                self.unexpected.append((status, body))

    @property
    def rejected(self) -> int:
        return self.sent - len(self.accepted)


@dataclass(frozen=True)
class LedgerReport:
    lost: list[tuple[str, str]]  # accepted updates with no counted row (or more than one)
    tokens_spent_twice: int
    totals_off: dict[str, tuple[int, int]]  # user → (total, sum of counted rows)
    board_matches: bool

    @property
    def holds(self) -> bool:
        return not (self.lost or self.tokens_spent_twice or self.totals_off) and self.board_matches


def ledger(database_url: str, redis_url: str, prefix: str, outcomes: Outcomes) -> LedgerReport:
    with psycopg.connect(database_url, connect_timeout=5) as db:
        counted = Counter(
            (str(user_id), str(action_id))
            for user_id, action_id in db.execute(
                "SELECT user_id, action_id FROM scoring_scoreupdate WHERE status = ANY(%s)",
                [list(COUNTED)],
            )
        )
        (tokens_spent_twice,) = db.execute(
            "SELECT count(*) FROM (SELECT action_token_id FROM scoring_scoreupdate"
            " WHERE action_token_id IS NOT NULL GROUP BY action_token_id HAVING count(*) > 1) t"
        ).fetchone() or (0,)
        totals = {
            str(user_id): (int(total), int(rows))
            for user_id, total, rows in db.execute(
                "SELECT t.user_id, t.score, coalesce(sum(u.score_increment), 0)"
                " FROM scoring_scoretotal t LEFT JOIN scoring_scoreupdate u"
                " ON u.user_id = t.user_id AND u.board = t.board AND u.status = ANY(%s)"
                " WHERE t.board = 'global' AND t.period = 'ALL_TIME'"
                " GROUP BY t.user_id, t.score",
                [list(COUNTED)],
            )
        }
    lost = [pair for pair in outcomes.accepted if counted[pair] != 1]
    return LedgerReport(
        lost=lost,
        tokens_spent_twice=int(tokens_spent_twice),
        totals_off={user: pair for user, pair in totals.items() if pair[0] != pair[1]},
        board_matches=index_standings(redis_url, prefix) == database_standings(database_url),
    )


def assert_ledger_holds(cluster: Cluster, outcomes: Outcomes) -> LedgerReport:
    env = cluster.env
    report = ledger(env["DATABASE_URL"], env["REDIS_URL"], env["REDIS_KEY_PREFIX"], outcomes)
    assert report.lost == [], report
    assert report.tokens_spent_twice == 0, report
    assert report.totals_off == {}, report
    assert report.board_matches, report
    return report


def database_standings(database_url: str) -> list[tuple[str, int]]:
    """The all-time board as the database ranks it: visible players above zero, highest
    first, the earlier to reach a score first, then by id (DESIGN.md §2)."""
    with psycopg.connect(database_url, connect_timeout=5) as db:
        return [
            (str(user_id), int(score))
            for user_id, score in db.execute(
                "SELECT t.user_id, t.score FROM scoring_scoretotal t"
                " JOIN accounts_user u ON u.id = t.user_id"
                " WHERE t.board = 'global' AND t.period = 'ALL_TIME' AND t.score > 0"
                " AND u.is_active AND NOT u.hide_from_leaderboards AND u.erased_at IS NULL"
                " ORDER BY t.score DESC, t.reached_at, t.user_id"
            )
        ]


def index_standings(redis_url: str, prefix: str) -> list[tuple[str, int]]:
    """The all-time board as the Redis index holds it, in its order."""
    client = redis.Redis.from_url(redis_url, socket_connect_timeout=2, socket_timeout=5)
    try:
        entries = client.zrevrange(f"{prefix}:{ALL_TIME_SET}", 0, -1, withscores=True)
    finally:
        client.close()
    return [
        (str(decode_member(bytes(member).decode())[0]), int(score))
        for member, score in cast(list[tuple[bytes, float]], entries)
    ]
