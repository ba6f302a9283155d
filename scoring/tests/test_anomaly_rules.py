"""The anomaly rules as pure functions: each at, below and above its threshold, how their
weights add up to a status, and the defaults never tripping for a normal player.

No database and no clock: every time is explicit.
"""

from __future__ import annotations

import dataclasses
import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scoring.anomaly import (
    ActionLimits,
    AnomalyConfig,
    Completion,
    Reason,
    ReasonCode,
    action_daily_cap,
    assess,
    ip_hop,
    points_per_window,
    repeated_action,
    same_network,
    status_for_risk,
    too_fast,
)
from scoring.models import ScoreStatus
from scoring.services import DEFAULT_ACTIONS

# The documented defaults (docs/scoring.md, docs/configuration.md).
DEFAULTS = AnomalyConfig(
    flag_threshold=30,
    hold_threshold=80,
    points_limit=2000,
    points_window=timedelta(seconds=600),
    points_weight=50,
    too_fast_weight=30,
    repeat_limit=15,
    repeat_window=timedelta(seconds=300),
    repeat_weight=30,
    daily_cap_weight=30,
    ip_window=timedelta(seconds=300),
    ip_weight=20,
)
CATALOG = {
    action_type: ActionLimits(min_duration_seconds=minimum, daily_cap_per_user=cap)
    for action_type, _, _, minimum, cap in DEFAULT_ACTIONS
}
POINTS = {action_type: points for action_type, points, *_ in DEFAULT_ACTIONS}
NO_LIMITS = ActionLimits(min_duration_seconds=0, daily_cap_per_user=None)
WIN_GAME = CATALOG["WIN_GAME"]  # 100 points, at least 60 s
T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
IP = "203.0.113.7"
OTHER_IP = "198.51.100.23"


def done(
    seconds: float,
    action_type: str = "WIN_GAME",
    *,
    points: int = 100,
    ip: str | None = IP,
    completed: float | None = None,
    issued: float | None = None,
) -> Completion:
    """A completion recorded `seconds` after T0; by default completed and issued then too."""
    moment = T0 + timedelta(seconds=seconds)
    return Completion(
        action_type=action_type,
        points=points,
        ip_address=ip,
        recorded_at=moment,
        completed_at=T0 + timedelta(seconds=seconds if completed is None else completed),
        issued_at=T0 + timedelta(seconds=seconds if issued is None else issued),
    )


def test_the_settings_defaults_are_the_documented_ones() -> None:
    assert AnomalyConfig.from_settings() == DEFAULTS


# --- POINTS_PER_WINDOW: more than 2000 points within 600 s ----------------------------------


@pytest.mark.parametrize(
    ("earlier_points", "trips"),
    [(1899, False), (1900, False), (1901, True)],
    ids=["below", "at", "above"],
)
def test_points_per_window_trips_only_above_the_limit(earlier_points: int, trips: bool) -> None:
    history = [done(-300, "COMPLETE_QUEST", points=earlier_points)]

    reason = points_per_window(done(0, points=100), history, NO_LIMITS, DEFAULTS)

    if trips:
        assert reason == Reason(
            ReasonCode.POINTS_PER_WINDOW,
            50,
            observed=earlier_points + 100,
            limit=2000,
            detail=f"{earlier_points + 100} points within 600 s (limit 2000).",
        )
    else:
        assert reason is None


def test_points_older_than_the_window_do_not_count() -> None:
    inside = [done(-599.999, points=1000)]
    at_the_edge = [done(-600, points=1000)]

    assert points_per_window(done(0, points=1001), inside, NO_LIMITS, DEFAULTS) is not None
    assert points_per_window(done(0, points=1001), at_the_edge, NO_LIMITS, DEFAULTS) is None


# --- TOO_FAST: the same action type again sooner than its minimum duration -------------------


@pytest.mark.parametrize(
    ("gap", "trips"), [(59.999, True), (60, False), (61, False)], ids=["below", "at", "above"]
)
def test_too_fast_trips_only_below_the_minimum_duration(gap: float, trips: bool) -> None:
    reason = too_fast(done(gap), [done(0)], WIN_GAME, DEFAULTS)

    if trips:
        assert reason == Reason(
            ReasonCode.TOO_FAST,
            30,
            observed=gap,
            limit=60,
            detail=f"WIN_GAME {gap:g} s after the previous one (minimum 60 s).",
        )
    else:
        assert reason is None


@pytest.mark.parametrize(
    ("completed_gap", "issued_gap"), [(120, 10), (10, 120)], ids=["issued", "completed"]
)
def test_too_fast_measures_the_shorter_of_the_two_clocks(
    completed_gap: float, issued_gap: float
) -> None:
    # Holding a proof back (issued late) or a back-dated proof (completed early) cannot
    # stretch the interval: the shorter one counts.
    update = done(200, completed=completed_gap, issued=issued_gap)

    reason = too_fast(update, [done(0)], WIN_GAME, DEFAULTS)

    assert reason is not None
    assert reason.observed == 10


def test_too_fast_counts_the_nearest_completion_on_either_side() -> None:
    # Tokens spent out of order: the update completed before the one scored earlier.
    update = done(30, completed=100, issued=100)
    history = [done(20, completed=130, issued=130), done(-500, completed=-500, issued=-500)]

    reason = too_fast(update, history, WIN_GAME, DEFAULTS)

    assert reason is not None
    assert reason.observed == 30


def test_too_fast_ignores_other_action_types_and_actions_without_a_minimum() -> None:
    # An achievement may unlock in the middle of a match.
    assert too_fast(done(1), [done(0, "ACHIEVEMENT_UNLOCK")], WIN_GAME, DEFAULTS) is None
    assert too_fast(done(0.5, "ACHIEVEMENT_UNLOCK"), [done(0, "ACHIEVEMENT_UNLOCK")],
                    CATALOG["ACHIEVEMENT_UNLOCK"], DEFAULTS) is None  # fmt: skip
    assert too_fast(done(0), [], WIN_GAME, DEFAULTS) is None


# --- REPEATED_ACTION: one action type more than 15 times within 300 s ------------------------


@pytest.mark.parametrize(
    ("count", "trips"), [(14, False), (15, False), (16, True)], ids=["below", "at", "above"]
)
def test_repeated_action_trips_only_above_the_limit(count: int, trips: bool) -> None:
    earlier = [done(-10 * n, "ACHIEVEMENT_UNLOCK", points=25) for n in range(1, count)]
    update = done(0, "ACHIEVEMENT_UNLOCK", points=25)

    reason = repeated_action(update, earlier, NO_LIMITS, DEFAULTS)

    if trips:
        assert reason == Reason(
            ReasonCode.REPEATED_ACTION,
            30,
            observed=count,
            limit=15,
            detail=f"ACHIEVEMENT_UNLOCK {count} times within 300 s (limit 15).",
        )
    else:
        assert reason is None


def test_repeated_action_counts_only_the_same_type_inside_the_window() -> None:
    others = [done(-n, "COMPLETE_QUEST") for n in range(1, 30)]
    old = [done(-300 - n) for n in range(30)]
    same = [done(-n) for n in range(1, 15)]  # 14 + the update = 15: at the limit

    assert repeated_action(done(0), others + old + same, NO_LIMITS, DEFAULTS) is None
    assert repeated_action(done(0), [*others, *old, *same, done(-299.9)], NO_LIMITS, DEFAULTS)


# --- ACTION_DAILY_CAP: more updates of one type in a UTC day than its cap --------------------

MIDNIGHT = datetime(2026, 11, 28, tzinfo=UTC)


def at(moment: datetime, action_type: str = "DAILY_LOGIN") -> Completion:
    return done((moment - T0).total_seconds(), action_type, points=10)


@pytest.mark.parametrize(
    ("cap", "earlier_today", "trips"),
    [(3, 1, False), (3, 2, False), (3, 3, True)],
    ids=["below", "at", "above"],
)
def test_action_daily_cap_trips_only_above_the_cap(
    cap: int, earlier_today: int, trips: bool
) -> None:
    limits = ActionLimits(min_duration_seconds=0, daily_cap_per_user=cap)
    history = [at(MIDNIGHT + timedelta(hours=n)) for n in range(earlier_today)]

    reason = action_daily_cap(at(MIDNIGHT + timedelta(hours=12)), history, limits, DEFAULTS)

    if trips:
        assert reason == Reason(
            ReasonCode.ACTION_DAILY_CAP,
            30,
            observed=cap + 1,
            limit=cap,
            detail=f"DAILY_LOGIN {cap + 1} times in the UTC day (cap {cap}).",
        )
    else:
        assert reason is None


def test_a_token_spent_after_midnight_counts_for_the_day_it_is_spent() -> None:
    # Issued (and capped) yesterday, spent today: the hard cap at actions/complete counted it
    # for yesterday, so a second one today is the one it cannot see.
    spent_after_midnight = at(MIDNIGHT + timedelta(seconds=30))
    yesterday = at(MIDNIGHT - timedelta(microseconds=1))
    limits = CATALOG["DAILY_LOGIN"]

    second = at(MIDNIGHT + timedelta(hours=8))

    assert action_daily_cap(second, [yesterday], limits, DEFAULTS) is None
    assert action_daily_cap(second, [spent_after_midnight], limits, DEFAULTS) is not None


def test_action_daily_cap_ignores_uncapped_actions_and_other_types() -> None:
    many = [at(MIDNIGHT + timedelta(minutes=n), "WIN_GAME") for n in range(50)]

    assert action_daily_cap(at(MIDNIGHT + timedelta(hours=2), "WIN_GAME"), many, WIN_GAME,
                            DEFAULTS) is None  # fmt: skip
    assert action_daily_cap(at(MIDNIGHT + timedelta(hours=2)), many, CATALOG["DAILY_LOGIN"],
                            DEFAULTS) is None  # fmt: skip


# --- IP_HOP: another address than the previous update's within 300 s ------------------------


@pytest.mark.parametrize(
    ("gap", "trips"), [(299.999, True), (300, False), (301, False)], ids=["inside", "at", "after"]
)
def test_ip_hop_trips_only_within_the_window(gap: float, trips: bool) -> None:
    reason = ip_hop(done(gap, ip=OTHER_IP), [done(0, ip=IP)], NO_LIMITS, DEFAULTS)

    if trips:
        assert reason == Reason(
            ReasonCode.IP_HOP,
            20,
            observed=gap,
            limit=300,
            detail=f"From {IP} to {OTHER_IP} {gap:g} s after the previous update.",
        )
    else:
        assert reason is None


def test_ip_hop_compares_with_the_most_recent_update_only() -> None:
    history = [done(-200, ip=OTHER_IP), done(-100, ip=IP)]
    random.Random(7).shuffle(history)

    assert ip_hop(done(0, ip=IP), history, NO_LIMITS, DEFAULTS) is None
    assert ip_hop(done(0, ip=OTHER_IP), history, NO_LIMITS, DEFAULTS) is not None


def test_unknown_addresses_never_trip_ip_hop() -> None:
    assert ip_hop(done(1, ip=None), [done(0, ip=IP)], NO_LIMITS, DEFAULTS) is None
    assert ip_hop(done(1, ip=IP), [done(0, ip=None)], NO_LIMITS, DEFAULTS) is None
    assert ip_hop(done(1, ip=IP), [], NO_LIMITS, DEFAULTS) is None


@pytest.mark.parametrize(
    ("first", "second", "same"),
    [
        ("203.0.113.7", "203.0.113.7", True),
        ("203.0.113.7", "203.0.113.8", False),
        ("2001:db8:1:2::1", "2001:db8:1:2:aaaa:bbbb:cccc:dddd", True),  # privacy addresses
        ("2001:db8:1:2::1", "2001:db8:1:3::1", False),
        ("::ffff:203.0.113.7", "203.0.113.7", True),
        ("203.0.113.7", "2001:db8::1", False),
    ],
)
def test_same_network(first: str, second: str, same: bool) -> None:
    assert same_network(first, second) is same
    assert same_network(second, first) is same


# --- weights add up to a status ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("risk", "status"),
    [
        (0, ScoreStatus.COUNTED),
        (29, ScoreStatus.COUNTED),
        (30, ScoreStatus.FLAGGED),
        (79, ScoreStatus.FLAGGED),
        (80, ScoreStatus.HELD),
        (200, ScoreStatus.HELD),
    ],
)
def test_the_risk_decides_the_status_at_each_threshold(risk: int, status: ScoreStatus) -> None:
    assert status_for_risk(risk, DEFAULTS) is status


def test_tripped_rules_add_their_weights() -> None:
    update = done(10, ip=OTHER_IP)  # a second win 10 s after the first, from elsewhere

    assessment = assess(update, [done(0)], WIN_GAME, DEFAULTS)

    assert assessment.codes == ["TOO_FAST", "IP_HOP"]
    assert assessment.risk == 50
    assert assessment.status is ScoreStatus.FLAGGED
    assert [entry["code"] for entry in assessment.risk_reasons()] == ["TOO_FAST", "IP_HOP"]
    assert assessment.risk_reasons()[0] == {
        "code": "TOO_FAST",
        "weight": 30,
        "observed": 10,
        "limit": 60,
        "detail": "WIN_GAME 10 s after the previous one (minimum 60 s).",
    }


def test_converging_rules_hold_an_update() -> None:
    history = [done(-n * 10, ip=IP) for n in range(1, 21)]  # 20 wins in 200 s

    assessment = assess(done(0, ip=OTHER_IP), history, WIN_GAME, DEFAULTS)

    assert assessment.codes == ["POINTS_PER_WINDOW", "TOO_FAST", "REPEATED_ACTION", "IP_HOP"]
    assert assessment.risk == 50 + 30 + 30 + 20
    assert assessment.status is ScoreStatus.HELD


def test_a_rule_weighted_zero_is_recorded_but_adds_nothing() -> None:
    watch_only = dataclasses.replace(DEFAULTS, too_fast_weight=0)

    assessment = assess(done(10), [done(0)], WIN_GAME, watch_only)

    assert assessment.codes == ["TOO_FAST"]
    assert assessment.risk == 0
    assert assessment.status is ScoreStatus.COUNTED


def test_the_history_covers_every_window_the_minimum_duration_and_the_day() -> None:
    now = T0 + timedelta(hours=5)
    long_action = ActionLimits(min_duration_seconds=3600, daily_cap_per_user=None)
    capped = ActionLimits(min_duration_seconds=0, daily_cap_per_user=1)

    assert DEFAULTS.history_start(now=now) == now - timedelta(seconds=600)
    assert DEFAULTS.same_type_start(now=now, action=WIN_GAME) == now - timedelta(seconds=600)
    assert DEFAULTS.same_type_start(now=now, action=long_action) == now - timedelta(hours=1)
    assert DEFAULTS.same_type_start(now=now, action=capped) == datetime(2026, 11, 27, tzinfo=UTC)


# --- properties -------------------------------------------------------------------------------

completions = st.builds(
    done,
    st.floats(-900, 0),
    st.sampled_from(sorted(CATALOG)),
    points=st.integers(1, 1000),
    ip=st.sampled_from([IP, OTHER_IP, None]),
    completed=st.floats(-900, 0),
    issued=st.floats(-900, 0),
)


@given(
    update=completions,
    history=st.lists(completions, max_size=40),
    seed=st.integers(),
)
def test_the_order_of_the_history_does_not_matter(
    update: Completion, history: list[Completion], seed: int
) -> None:
    shuffled = list(history)
    random.Random(seed).shuffle(shuffled)
    limits = CATALOG[update.action_type]

    assert assess(update, shuffled, limits, DEFAULTS) == assess(update, history, limits, DEFAULTS)


# A normal player: at least 30 s between actions, each action type no sooner than its catalog
# minimum (plus the up to 2 s their client takes to present a proof and then the score),
# capped actions at most as often as the cap in a UTC day, one address.
normal_steps = st.lists(
    st.tuples(
        st.sampled_from(sorted(CATALOG)),
        st.floats(0, 900),  # extra seconds before the next action
        st.floats(0, 1),  # seconds to present the proof
        st.floats(0, 1),  # seconds to submit the score
    ),
    max_size=120,
)


@settings(max_examples=300, deadline=None)
@given(start=st.floats(0, 2 * 86400), steps=normal_steps)
def test_the_defaults_never_flag_a_normal_player(
    start: float, steps: list[tuple[str, float, float, float]]
) -> None:
    history: list[Completion] = []
    last_of_type: dict[str, float] = {}
    done_per_day: dict[tuple[str, datetime], int] = {}
    clock = start
    for action_type, extra, proof_delay, submit_delay in steps:
        limits = CATALOG[action_type]
        if history:
            clock += 30 + extra
        if action_type in last_of_type:
            clock = max(clock, last_of_type[action_type] + limits.min_duration_seconds + 2)
        completed = T0 + timedelta(seconds=clock)
        issued = completed + timedelta(seconds=proof_delay)
        recorded = issued + timedelta(seconds=submit_delay)
        if limits.daily_cap_per_user is not None:
            day = completed.replace(hour=0, minute=0, second=0, microsecond=0)
            # A capped action completed in the day's last seconds and scored after midnight
            # counts for the next day: see docs/scoring.md, ACTION_DAILY_CAP.
            if recorded >= day + timedelta(days=1):
                continue
            if done_per_day.get((action_type, day), 0) >= limits.daily_cap_per_user:
                continue
            done_per_day[(action_type, day)] = done_per_day.get((action_type, day), 0) + 1
        update = Completion(
            action_type=action_type,
            points=POINTS[action_type],
            ip_address=IP,
            recorded_at=recorded,
            completed_at=completed,
            issued_at=issued,
        )

        assessment = assess(update, history, limits, DEFAULTS)

        assert assessment.reasons == (), assessment
        history.append(update)
        last_of_type[action_type] = clock


@settings(max_examples=100, deadline=None)
@given(gaps=st.lists(st.floats(0, 59.9), min_size=1, max_size=30))
def test_the_same_timed_action_again_too_soon_is_always_flagged(gaps: list[float]) -> None:
    history = [done(0)]
    clock = 0.0
    for gap in gaps:
        clock += gap
        update = done(clock)

        assessment = assess(update, history, WIN_GAME, DEFAULTS)

        assert "TOO_FAST" in assessment.codes
        assert assessment.status in (ScoreStatus.FLAGGED, ScoreStatus.HELD)
        history.append(update)
