"""A moderator approving and rejecting a player's flagged updates while the same player keeps
scoring, over two nodes: every decision lands once, every rejection is reverted exactly once,
and the player's total is the sum of what still counts."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import psycopg

from realtime.tests.cluster import Cluster, Earned
from tests.reliability.conftest import FLAG_EVERY_REPEAT
from tests.reliability.ledger import Outcomes, assert_ledger_holds
from tests.reliability.load import ACTION, earn_many, moderator, spend_and_record
from tests.reliability.report import Report, Row

FLAGGED_FIRST = 20  # the first counts plainly, the repeats are flagged
NEW_UPDATES = 40


def test_decisions_raced_against_new_updates_leave_exact_totals(
    make_cluster: Callable[..., Cluster], reliability_report: Report
) -> None:
    cluster = make_cluster(**FLAG_EVERY_REPEAT)
    player = cluster.register(cluster.a, "reviewed")
    reviewer = moderator(cluster, "moderator")

    outcomes = Outcomes()
    for _ in range(FLAGGED_FIRST):
        status, earned = cluster.earn(cluster.a, player, ACTION)
        assert isinstance(earned, Earned), (status, earned)
        assert spend_and_record(cluster, cluster.a, earned, outcomes, allowed=()) == 200
    status, body = cluster.a.call(
        "GET", "/api/v1/moderation/flags?status=FLAGGED&limit=100", token=reviewer.access
    )
    assert status == 200, body
    flagged = body["data"]["items"]
    assert len(flagged) == FLAGGED_FIRST - 1
    rejected = {item["id"]: item["actionId"] for item in flagged[::2]}
    approved = [item["id"] for item in flagged[1::2]]
    fresh = earn_many(cluster, cluster.b, [player], NEW_UPDATES)

    decisions: Counter[int] = Counter()

    def decide(update_id: str, verb: str, turn: int) -> None:
        node = (cluster.a, cluster.b)[turn % 2]
        path = f"/api/v1/moderation/flags/{update_id}/{verb}"
        status, body = node.call("POST", path, {}, token=reviewer.access)
        assert status == 200, body
        decisions[status] += 1

    def score(turn: int) -> None:
        node = (cluster.a, cluster.b)[turn % 2]
        spend_and_record(cluster, node, fresh[turn], outcomes, allowed=())

    with ThreadPoolExecutor(max_workers=16) as pool:
        futures = [
            *(pool.submit(decide, update_id, "reject", n) for n, update_id in enumerate(rejected)),
            *(pool.submit(decide, update_id, "approve", n) for n, update_id in enumerate(approved)),
            *(pool.submit(score, turn) for turn in range(NEW_UPDATES)),
        ]
        for future in futures:
            future.result()

    assert outcomes.statuses == {200: FLAGGED_FIRST + NEW_UPDATES}, outcomes.unexpected[:2]
    assert decisions == {200: len(rejected) + len(approved)}
    with psycopg.connect(cluster.env["DATABASE_URL"]) as db:
        reversals = Counter(
            str(reverses)
            for (reverses,) in db.execute(
                "SELECT reverses_id FROM scoring_scoreupdate WHERE status = 'REVERSAL'"
            )
        )
    assert reversals == Counter(dict.fromkeys(rejected, 1))
    # A rejected update was accepted, then taken back by a moderator: not lost.
    outcomes.accepted = [
        pair for pair in outcomes.accepted if pair[1] not in set(rejected.values())
    ]
    checked = assert_ledger_holds(cluster, outcomes)
    reliability_report.add(
        Row(
            scenario="moderator decisions raced against new updates",
            injected=f"{len(rejected)} rejections and {len(approved)} approvals of one "
            f"player's flagged updates while {NEW_UPDATES} more arrive, over two nodes",
            sent=outcomes.sent + len(rejected) + len(approved),
            accepted=outcomes.statuses[200] + decisions[200],
            rejected=0,
            lost=len(checked.lost),
            converged_seconds=None,
        )
    )
