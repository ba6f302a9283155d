"""The anomaly rules on the write path, through `POST /api/v1/scores/update`: flagged updates
count and are queued, held ones are recorded but change nothing players or boards see, and a
scripted cheater is caught while a normal player in the same run never is.

Rules that need old data get it from history rows written directly (`past`); live updates go
through the API with real, fresh proofs.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework import status

from accounts.models import User
from accounts.tests.helpers import UtcTimestamp
from leaderboard.backends.base import Board, BoardKey
from leaderboard.backends.redis import RedisBoard
from leaderboard.backends.sql import SqlBoard
from leaderboard.services import leaderboard_rebuild
from scoreboard.config import Rate
from scoring.models import Action, ActionToken, ScoreStatus, ScoreTotal, ScoreUpdate
from scoring.periods import Period, period_starts
from scoring.services import hash_action_token, score_update_apply
from scoring.signals import ScoreCommitted, score_committed
from scoring.tests.fixtures import HISTORY_URL, GameServerKey, Player

pytestmark = pytest.mark.django_db

IP = "203.0.113.7"
OTHER_IP = "198.51.100.23"
THIRD_IP = "192.0.2.44"


# --- helpers ----------------------------------------------------------------------------------


def past(
    player: Player,
    game_server: GameServerKey,
    *,
    seconds_ago: float,
    action_type: str = "WIN_GAME",
    points: int | None = None,
    ip: str | None = IP,
    completed_at: datetime | None = None,
    issued_at: datetime | None = None,
    recorded_at: datetime | None = None,
) -> ScoreUpdate:
    """An earlier completion in the player's history: a spent token and its audit row. Only
    the rules read it (totals are left alone)."""
    moment = recorded_at or timezone.now() - timedelta(seconds=seconds_ago)
    action = Action.objects.get(action_type=action_type)
    points = action.base_points if points is None else points
    token = ActionToken.objects.create(
        user=player.user,
        action_type=action,
        action_id=uuid.uuid4(),
        game_server=game_server.server,
        token_hash=hash_action_token(uuid.uuid4().hex),
        points=points,
        completed_at=completed_at or moment,
        expires_at=moment + timedelta(minutes=5),
        used_at=moment,
        is_valid=False,
    )
    # created_at is auto_now_add: set when the token was "issued" afterwards.
    ActionToken.objects.filter(pk=token.pk).update(created_at=issued_at or moment)
    return ScoreUpdate.objects.create(
        user=player.user,
        action_type=action_type,
        action_id=token.action_id,
        action_token=token,
        score_increment=points,
        previous_score=0,
        new_score=0,
        ip_address=ip,
        verified=True,
        created_at=moment,
    )


def score(
    player: Player, game_server: GameServerKey, action_type: str = "WIN_GAME", *, ip: str = IP
) -> Any:
    """Complete an action and submit its score from `ip`; returns the score update response."""
    token, proof = player.complete(game_server, action_type=action_type)
    body = player.update_body(
        action_id=proof["actionId"],
        action_type=action_type,
        score_increment=proof["scoreIncrement"],
    )
    return player.submit(token, body, REMOTE_ADDR=ip)


def audit(response: Any) -> ScoreUpdate:
    """The audit row of the update a response answered."""
    assert response.status_code in (200, 202), response.content
    return ScoreUpdate.objects.filter(action_token__isnull=False).latest("created_at")


def codes(update: ScoreUpdate) -> list[str]:
    return [reason["code"] for reason in update.risk_reasons]


def all_time_total(user: User) -> int:
    return ScoreTotal.objects.get(user=user, period=Period.ALL_TIME).score


def away_from_midnight(margin_seconds: float = 15) -> None:
    """Tests that write "earlier today" rows must not straddle a UTC midnight."""
    now = datetime.now(UTC)
    next_midnight = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    if (next_midnight - now).total_seconds() < margin_seconds:
        time.sleep((next_midnight - now).total_seconds() + 0.5)


@pytest.fixture
def generous_rate_limits(settings: Any) -> None:
    """Bursts beyond the per-player limit: the anomaly rules are under test, not the limits."""
    settings.SCOREBOARD_RATE_SCORE_UPDATES = Rate(1000, 60)
    settings.SCOREBOARD_RATE_API_PER_IP = Rate(1000, 60)


@pytest.fixture
def events() -> Iterator[list[ScoreCommitted]]:
    received: list[ScoreCommitted] = []

    def receiver(sender: Any, event: ScoreCommitted, **kwargs: Any) -> None:
        received.append(event)

    score_committed.connect(receiver)
    yield received
    score_committed.disconnect(receiver)


# --- each rule through the API ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("earlier_points", "expected"),
    [(1899, ScoreStatus.COUNTED), (1900, ScoreStatus.COUNTED), (1901, ScoreStatus.FLAGGED)],
    ids=["below", "at", "above"],
)
def test_points_per_window(
    player: Player, game_server: GameServerKey, earlier_points: int, expected: ScoreStatus
) -> None:
    past(player, game_server, seconds_ago=400, action_type="COMPLETE_QUEST", points=950)
    past(
        player,
        game_server,
        seconds_ago=200,
        action_type="COMPLETE_QUEST",
        points=earlier_points - 950,
    )

    update = audit(score(player, game_server))  # WIN_GAME: 100 more

    assert update.status == expected
    assert codes(update) == ([] if expected == ScoreStatus.COUNTED else ["POINTS_PER_WINDOW"])


def test_points_older_than_the_window_do_not_count(
    player: Player, game_server: GameServerKey
) -> None:
    past(player, game_server, seconds_ago=601, action_type="COMPLETE_QUEST", points=1000)
    past(player, game_server, seconds_ago=602, action_type="COMPLETE_QUEST", points=1000)

    assert audit(score(player, game_server)).status == ScoreStatus.COUNTED


@pytest.mark.parametrize(
    ("interval", "expected"),
    [
        (timedelta(seconds=59, microseconds=999000), ScoreStatus.FLAGGED),
        (timedelta(seconds=60), ScoreStatus.COUNTED),
        (timedelta(seconds=61), ScoreStatus.COUNTED),
    ],
    ids=["below", "at", "above"],
)
def test_too_fast(
    player: Player, game_server: GameServerKey, interval: timedelta, expected: ScoreStatus
) -> None:
    # The previous WIN_GAME (at least 60 s) finished and was issued exactly `interval` before
    # this one, on both clocks.
    token, proof = player.complete(game_server)
    issued = ActionToken.objects.get(action_id=proof["actionId"])
    past(
        player,
        game_server,
        seconds_ago=0,
        completed_at=issued.completed_at - interval,
        issued_at=issued.created_at - interval,
        recorded_at=issued.created_at - interval,
    )

    response = player.submit(token, player.update_body(action_id=proof["actionId"]), REMOTE_ADDR=IP)

    update = audit(response)
    assert update.status == expected
    assert codes(update) == ([] if expected == ScoreStatus.COUNTED else ["TOO_FAST"])


def test_too_fast_measures_the_issue_clock_too(player: Player, game_server: GameServerKey) -> None:
    # The game server's times say two minutes apart; the tokens were issued 10 s apart.
    token, proof = player.complete(game_server)
    issued = ActionToken.objects.get(action_id=proof["actionId"])
    past(
        player,
        game_server,
        seconds_ago=10,
        completed_at=issued.completed_at - timedelta(minutes=2),
        issued_at=issued.created_at - timedelta(seconds=10),
    )

    update = audit(
        player.submit(token, player.update_body(action_id=proof["actionId"]), REMOTE_ADDR=IP)
    )

    assert codes(update) == ["TOO_FAST"]
    assert update.risk_reasons[0]["observed"] == pytest.approx(10, abs=0.001)


def test_too_fast_looks_back_one_minimum_duration_beyond_the_windows(
    player: Player, game_server: GameServerKey
) -> None:
    Action.objects.filter(action_type="WIN_GAME").update(min_duration_seconds=3600)
    past(player, game_server, seconds_ago=1800)  # older than every window (10 min)
    past(player, game_server, seconds_ago=1700, action_type="COMPLETE_QUEST", ip=OTHER_IP)

    update = audit(score(player, game_server))

    assert codes(update) == ["TOO_FAST"]  # the quest is too old for IP_HOP


def test_other_action_types_do_not_make_an_action_too_fast(
    player: Player, game_server: GameServerKey
) -> None:
    past(player, game_server, seconds_ago=5, action_type="ACHIEVEMENT_UNLOCK")
    past(player, game_server, seconds_ago=35, action_type="COMPLETE_QUEST")

    assert audit(score(player, game_server)).risk_reasons == []


@pytest.mark.parametrize(
    ("earlier", "expected"),
    [(13, ScoreStatus.COUNTED), (14, ScoreStatus.COUNTED), (15, ScoreStatus.FLAGGED)],
    ids=["below", "at", "above"],
)
def test_repeated_action(
    player: Player, game_server: GameServerKey, earlier: int, expected: ScoreStatus
) -> None:
    for n in range(earlier):
        past(player, game_server, seconds_ago=15 + 15 * n, action_type="ACHIEVEMENT_UNLOCK")

    update = audit(score(player, game_server, "ACHIEVEMENT_UNLOCK"))

    assert update.status == expected
    assert codes(update) == ([] if expected == ScoreStatus.COUNTED else ["REPEATED_ACTION"])


@pytest.mark.parametrize(
    ("spent_today", "expected"),
    [(False, ScoreStatus.COUNTED), (True, ScoreStatus.FLAGGED)],
    ids=["at", "above"],
)
def test_action_daily_cap(
    player: Player, game_server: GameServerKey, spent_today: bool, expected: ScoreStatus
) -> None:
    # DAILY_LOGIN: once a day. Yesterday's token was issued before midnight, so the hard cap
    # at actions/complete lets today's through; spent after midnight, it is today's first.
    away_from_midnight()
    now = timezone.now()
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    past(
        player,
        game_server,
        seconds_ago=0,
        action_type="DAILY_LOGIN",
        completed_at=midnight - timedelta(seconds=40),
        issued_at=midnight - timedelta(seconds=30),
        recorded_at=midnight + timedelta(seconds=5) if spent_today else midnight - timedelta(1),
    )

    update = audit(score(player, game_server, "DAILY_LOGIN"))

    assert update.status == expected
    assert codes(update) == ([] if expected == ScoreStatus.COUNTED else ["ACTION_DAILY_CAP"])


@pytest.mark.parametrize(
    ("seconds_ago", "ip", "hops"),
    [(60, IP, False), (60, OTHER_IP, True), (290, OTHER_IP, True), (301, OTHER_IP, False)],
    ids=["same-address", "hop", "hop-inside-window", "after-window"],
)
def test_ip_hop_alone_is_recorded_but_not_flagged(
    player: Player, game_server: GameServerKey, seconds_ago: float, ip: str, hops: bool
) -> None:
    past(player, game_server, seconds_ago=seconds_ago, action_type="COMPLETE_QUEST", ip=ip)

    update = audit(score(player, game_server, ip=IP))

    # Its weight (20) is under the flag threshold (30): a phone moving from Wi-Fi to mobile
    # data is not a moderator's business unless something else looks wrong too.
    assert update.status == ScoreStatus.COUNTED
    assert codes(update) == (["IP_HOP"] if hops else [])


def test_ip_hop_with_a_too_fast_action_is_flagged(
    player: Player, game_server: GameServerKey
) -> None:
    past(player, game_server, seconds_ago=20, ip=OTHER_IP)

    update = audit(score(player, game_server, ip=IP))

    assert update.status == ScoreStatus.FLAGGED
    assert codes(update) == ["TOO_FAST", "IP_HOP"]
    assert update.ip_address == IP


def test_moderators_compensating_entries_are_not_history(
    player: Player, game_server: GameServerKey
) -> None:
    # A reversal or any entry without an action token of its own is not a completion.
    ScoreUpdate.objects.create(
        user=player.user,
        action_type="WIN_GAME",
        action_id=uuid.uuid4(),
        score_increment=-100,
        previous_score=100,
        new_score=0,
        ip_address=OTHER_IP,
        created_at=timezone.now() - timedelta(seconds=5),
    )

    assert audit(score(player, game_server)).risk_reasons == []


# --- what FLAGGED and HELD mean ---------------------------------------------------------------


def make_suspicious(player: Player, game_server: GameServerKey) -> None:
    """History that makes the next WIN_GAME from IP flagged: TOO_FAST (30) + IP_HOP (20)."""
    past(player, game_server, seconds_ago=10, ip=OTHER_IP, points=100)


def make_very_suspicious(player: Player, game_server: GameServerKey) -> None:
    """History that makes the next WIN_GAME held: POINTS_PER_WINDOW (50) + TOO_FAST (30)
    (+ IP_HOP (20) from IP when this is the latest update)."""
    past(player, game_server, seconds_ago=300, action_type="COMPLETE_QUEST", points=1000)
    past(player, game_server, seconds_ago=10, ip=OTHER_IP, points=1000)


def test_a_flagged_update_counts_and_looks_normal_to_the_player(
    player: Player,
    game_server: GameServerKey,
    events: list[ScoreCommitted],
    django_capture_on_commit_callbacks: Any,
) -> None:
    make_suspicious(player, game_server)

    with django_capture_on_commit_callbacks(execute=True):
        response = score(player, game_server)

    assert response.status_code == status.HTTP_200_OK
    assert response.json() == {
        "success": True,
        "data": {
            "userId": str(player.user.pk),
            "newScore": 100,
            "scoreIncrement": 100,
            "rank": 1,
            "previousRank": None,
            "timestamp": UtcTimestamp(),
        },
        "message": "Score updated successfully",
    }
    update = audit(response)
    assert update.status == ScoreStatus.FLAGGED
    assert update.risk_reasons == [
        {
            "code": "TOO_FAST",
            "weight": 30,
            "observed": pytest.approx(10, abs=1),
            "limit": 60,
            "detail": update.risk_reasons[0]["detail"],
        },
        {
            "code": "IP_HOP",
            "weight": 20,
            "observed": pytest.approx(10, abs=1),
            "limit": 300,
            "detail": update.risk_reasons[1]["detail"],
        },
    ]
    assert update.risk_reasons[1]["detail"].startswith(f"From {OTHER_IP} to {IP} ")
    assert (update.previous_score, update.new_score) == (0, 100)
    assert all_time_total(player.user) == 100
    assert [(event.status, event.score_increment) for event in events] == [("FLAGGED", 100)]
    history = player.client.get(HISTORY_URL).json()["data"]["items"]
    assert history[0]["status"] == "COUNTED"  # the flag is for moderators only


def test_a_held_update_is_recorded_but_changes_nothing(
    player: Player,
    game_server: GameServerKey,
    make_player: Any,
    events: list[ScoreCommitted],
    django_capture_on_commit_callbacks: Any,
) -> None:
    rival = make_player(username="Rival", email="rival@example.com")
    with django_capture_on_commit_callbacks(execute=True):
        score(rival, game_server, ip=THIRD_IP)  # 100: rank 1
        score(player, game_server, "COMPLETE_QUEST")  # 50: rank 2
    totals_before = sorted(ScoreTotal.objects.values_list("user_id", "period", "score"))
    make_very_suspicious(player, game_server)
    events.clear()

    with django_capture_on_commit_callbacks(execute=True):
        response = score(player, game_server, ip=IP)

    assert response.status_code == status.HTTP_202_ACCEPTED
    assert response.json() == {
        "success": True,
        "data": {
            "userId": str(player.user.pk),
            "newScore": 50,
            "scoreIncrement": 100,
            "rank": 2,
            "previousRank": 2,
            "timestamp": UtcTimestamp(),
            "status": "PENDING_REVIEW",
        },
        "message": "Score update held for review",
    }
    update = audit(response)
    assert update.status == ScoreStatus.HELD
    assert codes(update) == ["POINTS_PER_WINDOW", "TOO_FAST"]
    assert (update.previous_score, update.new_score, update.score_increment) == (50, 50, 100)
    assert (update.previous_rank, update.new_rank) == (2, 2)
    assert update.action_token is not None
    assert update.action_token.used_at is not None  # spent: it cannot be submitted again
    assert sorted(ScoreTotal.objects.values_list("user_id", "period", "score")) == totals_before
    assert events == []
    history = player.client.get(HISTORY_URL).json()["data"]["items"]
    assert [(item["status"], item["newScore"]) for item in history[:2]] == [
        ("PENDING_REVIEW", 50),
        ("COUNTED", 50),
    ]


def test_a_held_update_cannot_be_replayed_with_its_token(
    player: Player, game_server: GameServerKey
) -> None:
    make_very_suspicious(player, game_server)
    token, proof = player.complete(game_server)
    body = player.update_body(action_id=proof["actionId"])

    first = player.submit(token, body, REMOTE_ADDR=IP)
    again = player.submit(token, body, REMOTE_ADDR=IP)

    assert first.status_code == status.HTTP_202_ACCEPTED
    assert again.status_code == status.HTTP_403_FORBIDDEN
    assert again.json()["error"]["code"] == "INVALID_ACTION_TOKEN"
    assert ScoreUpdate.objects.filter(status=ScoreStatus.HELD).count() == 1


def test_a_held_update_is_replayed_as_held_for_its_idempotency_key(
    player: Player, game_server: GameServerKey
) -> None:
    make_very_suspicious(player, game_server)
    token, proof = player.complete(game_server)
    body = player.update_body(action_id=proof["actionId"])
    key = str(uuid.uuid4())

    first = player.submit(token, body, REMOTE_ADDR=IP, HTTP_IDEMPOTENCY_KEY=key)
    retry = player.submit(token, body, REMOTE_ADDR=IP, HTTP_IDEMPOTENCY_KEY=key)

    assert first.status_code == retry.status_code == status.HTTP_202_ACCEPTED
    assert retry.json() == first.json()


@pytest.fixture(params=["sql", "redis"])
def board(request: pytest.FixtureRequest) -> Board:
    """The board backend under test; the Redis one is fed by the live index after commit."""
    if request.param == "redis":
        request.getfixturevalue("redis_index")
        leaderboard_rebuild()
        return RedisBoard()
    return SqlBoard()


def test_flagged_updates_are_on_the_boards_and_held_ones_are_not(
    board: Board,
    player: Player,
    game_server: GameServerKey,
    make_player: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    flagged = make_player(username="Flagged", email="flagged@example.com")
    held = make_player(username="Held", email="held@example.com")
    make_suspicious(flagged, game_server)
    make_very_suspicious(held, game_server)

    with django_capture_on_commit_callbacks(execute=True):
        assert score(player, game_server, "COMPLETE_QUEST").status_code == 200
        assert score(flagged, game_server).status_code == 200
        assert score(held, game_server).status_code == 202

    daily = BoardKey(period=Period.DAILY, period_start=period_starts(timezone.now())[Period.DAILY])
    for key in (BoardKey(), daily):
        standings = board.top(key, offset=0, limit=10)
        assert [(s.user_id, s.score, s.rank) for s in standings] == [
            (flagged.user.pk, 100, 1),
            (player.user.pk, 50, 2),
        ]
        assert board.position(key, held.user.pk) is None
    rows = player.client.get("/api/v1/leaderboard/top").json()["data"]["leaderboard"]
    assert [row["username"] for row in rows] == ["Flagged", "ProGamer123"]
    if isinstance(board, RedisBoard):
        leaderboard_rebuild()  # rebuilt from the database: still not there
        assert board.position(BoardKey(), held.user.pk) is None


# --- a scripted cheater and a normal player in one run ----------------------------------------


def test_a_scripted_cheater_is_caught_and_a_normal_player_never_is(
    player: Player,
    game_server: GameServerKey,
    make_player: Any,
    generous_rate_limits: None,
) -> None:
    cheater = make_player(username="Speedy", email="speedy@example.com")
    normal = player
    # The normal player's last half hour: an action every 75 s, none sooner than its catalog
    # minimum, one address; then, during the cheater's run, one action of each type.
    away_from_midnight(60)
    schedule = ["COMPLETE_QUEST", "WIN_GAME", "ACHIEVEMENT_UNLOCK", "COMPLETE_QUEST"] * 6
    for n, action_type in enumerate(schedule):
        past(
            normal,
            game_server,
            seconds_ago=75 * (len(schedule) - n),
            action_type=action_type,
            ip=THIRD_IP,
        )
    normal_live = iter(["WIN_GAME", "COMPLETE_QUEST", "ACHIEVEMENT_UNLOCK", "DAILY_LOGIN"])

    cheater_statuses: list[str] = []
    normal_updates: list[ScoreUpdate] = []
    for n in range(24):
        # Bursts of wins seconds apart, hopping between two addresses.
        response = score(cheater, game_server, "WIN_GAME", ip=(IP, OTHER_IP)[n % 2])
        cheater_statuses.append(audit(response).status)
        if n % 6 == 5:
            response = score(normal, game_server, next(normal_live), ip=THIRD_IP)
            assert response.status_code == status.HTTP_200_OK
            normal_updates.append(audit(response))

    assert cheater_statuses[0] == ScoreStatus.COUNTED  # nothing to compare with yet
    assert set(cheater_statuses[1:]) <= {ScoreStatus.FLAGGED, ScoreStatus.HELD}
    assert ScoreStatus.HELD in cheater_statuses
    counted = sum(s != ScoreStatus.HELD for s in cheater_statuses)
    assert all_time_total(cheater.user) == 100 * counted
    held = ScoreUpdate.objects.filter(user=cheater.user, status=ScoreStatus.HELD)
    assert all(
        {"TOO_FAST", "IP_HOP"} <= set(codes(update)) and update.new_score == update.previous_score
        for update in held
    )
    assert [(u.status, u.risk_reasons) for u in normal_updates] == [(ScoreStatus.COUNTED, [])] * 4


# --- concurrency and cost ---------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_concurrent_updates_of_one_player_cannot_escape_a_rule_together(
    player: Player, game_server: GameServerKey, settings: Any
) -> None:
    # Any two of these updates together are over the limit; each alone is not.
    from scoring.tests.test_concurrency import run_concurrently

    settings.SCOREBOARD_ANOMALY_POINTS_LIMIT = 150
    Action.objects.filter(action_type="WIN_GAME").update(min_duration_seconds=0)
    count = 8
    tokens = [f"token-{n}" for n in range(count)]
    action_ids = [uuid.uuid4() for _ in tokens]
    now = timezone.now()
    ActionToken.objects.bulk_create(
        ActionToken(
            user=player.user,
            action_type_id="WIN_GAME",
            action_id=action_id,
            game_server=game_server.server,
            token_hash=hash_action_token(token),
            points=100,
            completed_at=now,
            expires_at=now + timedelta(minutes=5),
        )
        for token, action_id in zip(tokens, action_ids, strict=True)
    )

    def apply(n: int) -> str:
        return score_update_apply(
            user=player.user,
            action_token=tokens[n],
            action_type="WIN_GAME",
            action_id=action_ids[n],
            score_increment=100,
            client_timestamp=None,
            ip_address=IP,
            user_agent="race",
        ).score_update.status

    statuses = run_concurrently(apply, count, workers=count)

    # Judged one after the other: the first counts, every later one sees it.
    assert sorted(statuses) == [ScoreStatus.COUNTED] + [ScoreStatus.FLAGGED] * (count - 1)
    assert all_time_total(player.user) == 100 * count


def apply_fresh_token(player: Player, game_server: GameServerKey) -> Any:
    token, proof = player.complete(game_server)
    return lambda: score_update_apply(
        user=player.user,
        action_token=token,
        action_type="WIN_GAME",
        action_id=uuid.UUID(proof["actionId"]),
        score_increment=100,
        client_timestamp=None,
        ip_address=IP,
        user_agent="",
    )


def test_the_rules_add_two_queries_to_a_counted_update(
    player: Player, game_server: GameServerKey, make_player: Any
) -> None:
    # Savepoint, token spend (returning its action's limits), player lock, history, totals
    # upsert, rank before, rank after (the SQL board; the Redis index answers ranks without
    # the database), audit insert, savepoint release. Before the rules: the same without the
    # lock and the history (7).
    rival = make_player(username="Rival", email="rival@example.com")
    score(rival, game_server, ip=THIRD_IP)
    score(player, game_server, "COMPLETE_QUEST")
    for n in range(30):
        past(player, game_server, seconds_ago=100 + n, action_type="ACHIEVEMENT_UNLOCK")
    apply = apply_fresh_token(player, game_server)

    with CaptureQueriesContext(connection) as queries:
        applied = apply()

    assert applied.score_update.status == ScoreStatus.COUNTED
    assert len(queries) == 9, [query["sql"] for query in queries]
    history = [query["sql"] for query in queries if "scoring_scoreupdate" in query["sql"]]
    assert len(history) == 2  # the history read and the audit insert


def test_a_held_update_costs_no_more_than_a_counted_one(
    player: Player, game_server: GameServerKey
) -> None:
    score(player, game_server, "COMPLETE_QUEST")
    make_very_suspicious(player, game_server)
    apply = apply_fresh_token(player, game_server)

    with CaptureQueriesContext(connection) as queries:
        applied = apply()

    # Savepoint, token spend, player lock, history, current total, rank, audit insert,
    # savepoint release.
    assert applied.is_held
    assert len(queries) == 8, [query["sql"] for query in queries]
