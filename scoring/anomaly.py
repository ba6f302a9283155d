"""Anomaly rules: how suspicious one score update looks beside the player's recent ones.

Pure functions over explicit data and times. The write path (`score_update_apply`) loads the
player's recent completions with one indexed query and calls `assess`; tests call the rules
directly. A rule that trips returns a `Reason` carrying its code and its weight; the weights of
all tripped rules add up to the update's risk, and the risk decides its status (DESIGN.md §6,
docs/scoring.md "Anomaly rules"):

* risk ≥ `SCOREBOARD_ANOMALY_HOLD_THRESHOLD`: HELD, not counted until a moderator approves it;
* risk ≥ `SCOREBOARD_ANOMALY_FLAG_THRESHOLD`: FLAGGED, counted, and queued for a moderator;
* below: COUNTED (any tripped rules are still recorded in `risk_reasons`).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import models

from scoring.models import ScoreStatus

# The most recent completions a rule ever needs: far beyond any count at which the count
# rules trip, so the query stays bounded even for a player flooding the service.
HISTORY_LIMIT = 1000


class ReasonCode(models.TextChoices):
    POINTS_PER_WINDOW = "POINTS_PER_WINDOW", "Too many points in a short time"
    TOO_FAST = "TOO_FAST", "Completed faster than the action's minimum duration"
    REPEATED_ACTION = "REPEATED_ACTION", "The same action repeated too often"
    ACTION_DAILY_CAP = "ACTION_DAILY_CAP", "More of one action in a day than its cap"
    IP_HOP = "IP_HOP", "Another IP address than the previous update's"


@dataclass(frozen=True)
class Completion:
    """One completed action that reached `scores/update`, as the rules see it."""

    action_type: str
    points: int
    ip_address: str | None
    # When the service applied the update (ScoreUpdate.created_at).
    recorded_at: datetime
    # When the game server says the action happened (signed in its proof).
    completed_at: datetime
    # When the service issued the action token for it (our own clock).
    issued_at: datetime


@dataclass(frozen=True)
class ActionLimits:
    """The catalog's limits for the action being scored."""

    min_duration_seconds: int
    daily_cap_per_user: int | None


@dataclass(frozen=True)
class AnomalyConfig:
    flag_threshold: int
    hold_threshold: int
    points_limit: int
    points_window: timedelta
    points_weight: int
    too_fast_weight: int
    repeat_limit: int
    repeat_window: timedelta
    repeat_weight: int
    daily_cap_weight: int
    ip_window: timedelta
    ip_weight: int

    @classmethod
    def from_settings(cls) -> AnomalyConfig:
        return cls(
            flag_threshold=settings.SCOREBOARD_ANOMALY_FLAG_THRESHOLD,
            hold_threshold=settings.SCOREBOARD_ANOMALY_HOLD_THRESHOLD,
            points_limit=settings.SCOREBOARD_ANOMALY_POINTS_LIMIT,
            points_window=timedelta(seconds=settings.SCOREBOARD_ANOMALY_POINTS_WINDOW_SECONDS),
            points_weight=settings.SCOREBOARD_ANOMALY_POINTS_WEIGHT,
            too_fast_weight=settings.SCOREBOARD_ANOMALY_TOO_FAST_WEIGHT,
            repeat_limit=settings.SCOREBOARD_ANOMALY_REPEAT_LIMIT,
            repeat_window=timedelta(seconds=settings.SCOREBOARD_ANOMALY_REPEAT_WINDOW_SECONDS),
            repeat_weight=settings.SCOREBOARD_ANOMALY_REPEAT_WEIGHT,
            daily_cap_weight=settings.SCOREBOARD_ANOMALY_DAILY_CAP_WEIGHT,
            ip_window=timedelta(seconds=settings.SCOREBOARD_ANOMALY_IP_WINDOW_SECONDS),
            ip_weight=settings.SCOREBOARD_ANOMALY_IP_WEIGHT,
        )

    def history_start(self, *, now: datetime) -> datetime:
        """The oldest completion of any type a rule looks at, judging an update at `now`."""
        return now - max(self.points_window, self.repeat_window, self.ip_window)

    def same_type_start(self, *, now: datetime, action: ActionLimits) -> datetime:
        """The oldest completion of the judged action's own type a rule looks at: also one
        minimum duration back, and the start of the UTC day for an action with a daily cap."""
        start = min(
            self.history_start(now=now), now - timedelta(seconds=action.min_duration_seconds)
        )
        if action.daily_cap_per_user is not None:
            return min(start, utc_day_start(now))
        return start


@dataclass(frozen=True)
class Reason:
    code: ReasonCode
    weight: int
    observed: float
    limit: float
    detail: str

    def as_json(self) -> dict[str, Any]:
        """The entry stored in `ScoreUpdate.risk_reasons`."""
        return {
            "code": self.code.value,
            "weight": self.weight,
            "observed": self.observed,
            "limit": self.limit,
            "detail": self.detail,
        }


@dataclass(frozen=True)
class Assessment:
    reasons: tuple[Reason, ...]
    status: ScoreStatus

    @property
    def risk(self) -> int:
        return sum(reason.weight for reason in self.reasons)

    @property
    def codes(self) -> list[str]:
        return [reason.code.value for reason in self.reasons]

    def risk_reasons(self) -> list[dict[str, Any]]:
        return [reason.as_json() for reason in self.reasons]


def utc_day_start(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def _seconds(delta: timedelta) -> float:
    return round(delta.total_seconds(), 3)


def _same_type(update: Completion, history: Sequence[Completion]) -> list[Completion]:
    return [earlier for earlier in history if earlier.action_type == update.action_type]


# --- the rules: (update, the player's earlier completions, catalog limits, config) ----------


def points_per_window(
    update: Completion,
    history: Sequence[Completion],
    action: ActionLimits,
    config: AnomalyConfig,
) -> Reason | None:
    """More points than the limit within the sliding window ending with this update."""
    since = update.recorded_at - config.points_window
    points = update.points + sum(
        earlier.points for earlier in history if earlier.recorded_at > since
    )
    if points <= config.points_limit:
        return None
    return Reason(
        ReasonCode.POINTS_PER_WINDOW,
        config.points_weight,
        observed=points,
        limit=config.points_limit,
        detail=(
            f"{points} points within {_seconds(config.points_window):g} s "
            f"(limit {config.points_limit})."
        ),
    )


def too_fast(
    update: Completion,
    history: Sequence[Completion],
    action: ActionLimits,
    config: AnomalyConfig,
) -> Reason | None:
    """An action of this type finished sooner after another of the same type than the
    catalog's minimum duration allows.

    The interval is measured on both clocks available: the game server's signed completion
    times and the times this service issued the action tokens. The shorter one counts, so
    neither holding a proof back nor a back-dated proof stretches it. The nearest completion
    on either side counts, so submitting tokens out of order does not hide one.
    Other action types do not count: an achievement may unlock in the middle of a match.
    """
    if action.min_duration_seconds <= 0:
        return None
    intervals = [
        min(
            abs(update.completed_at - earlier.completed_at),
            abs(update.issued_at - earlier.issued_at),
        )
        for earlier in _same_type(update, history)
    ]
    if not intervals:
        return None
    shortest = _seconds(min(intervals))
    if shortest >= action.min_duration_seconds:
        return None
    return Reason(
        ReasonCode.TOO_FAST,
        config.too_fast_weight,
        observed=shortest,
        limit=action.min_duration_seconds,
        detail=(
            f"{update.action_type} {shortest:g} s after the previous one "
            f"(minimum {action.min_duration_seconds} s)."
        ),
    )


def repeated_action(
    update: Completion,
    history: Sequence[Completion],
    action: ActionLimits,
    config: AnomalyConfig,
) -> Reason | None:
    """The same action type more often than the limit within the sliding window."""
    since = update.recorded_at - config.repeat_window
    count = 1 + sum(1 for earlier in _same_type(update, history) if earlier.recorded_at > since)
    if count <= config.repeat_limit:
        return None
    return Reason(
        ReasonCode.REPEATED_ACTION,
        config.repeat_weight,
        observed=count,
        limit=config.repeat_limit,
        detail=(
            f"{update.action_type} {count} times within {_seconds(config.repeat_window):g} s "
            f"(limit {config.repeat_limit})."
        ),
    )


def action_daily_cap(
    update: Completion,
    history: Sequence[Completion],
    action: ActionLimits,
    config: AnomalyConfig,
) -> Reason | None:
    """More updates of this action type in the UTC day than the catalog's daily cap.

    `actions/complete` already refuses tokens beyond the cap, counted by when they were
    issued; this counts by when the points land, which catches what the hard cap cannot: a
    token issued before midnight and spent after it, and tokens issued before an operator
    lowered the cap.
    """
    cap = action.daily_cap_per_user
    if cap is None:
        return None
    day_start = utc_day_start(update.recorded_at)
    count = 1 + sum(
        1 for earlier in _same_type(update, history) if earlier.recorded_at >= day_start
    )
    if count <= cap:
        return None
    return Reason(
        ReasonCode.ACTION_DAILY_CAP,
        config.daily_cap_weight,
        observed=count,
        limit=cap,
        detail=f"{update.action_type} {count} times in the UTC day (cap {cap}).",
    )


def ip_hop(
    update: Completion,
    history: Sequence[Completion],
    action: ActionLimits,
    config: AnomalyConfig,
) -> Reason | None:
    """Another IP address than the previous update's, that update being recent.

    IPv6 addresses in one /64 are one network: devices rotate their privacy addresses within
    it. Unknown addresses never trip the rule.
    """
    if not history or update.ip_address is None:
        return None
    latest = max(earlier.recorded_at for earlier in history)
    elapsed = update.recorded_at - latest
    if elapsed >= config.ip_window:
        return None
    # Updates recorded at the very same moment are all "the previous one".
    elsewhere = sorted(
        earlier.ip_address
        for earlier in history
        if earlier.recorded_at == latest
        and earlier.ip_address is not None
        and not same_network(update.ip_address, earlier.ip_address)
    )
    if not elsewhere:
        return None
    seconds = _seconds(max(elapsed, timedelta(0)))
    return Reason(
        ReasonCode.IP_HOP,
        config.ip_weight,
        observed=seconds,
        limit=_seconds(config.ip_window),
        detail=(
            f"From {elsewhere[0]} to {update.ip_address} {seconds:g} s after the previous update."
        ),
    )


def same_network(first: str, second: str) -> bool:
    """The same IPv4 address, or IPv6 addresses in the same /64 (IPv4-mapped addresses are
    their IPv4 address)."""
    try:
        a, b = _unmapped(ipaddress.ip_address(first)), _unmapped(ipaddress.ip_address(second))
    except ValueError:
        return first == second
    if a.version != b.version:
        return False
    if a.version == 6:
        return ipaddress.ip_network(f"{a}/64", strict=False) == ipaddress.ip_network(
            f"{b}/64", strict=False
        )
    return a == b


def _unmapped(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address,
) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


Rule = Callable[[Completion, Sequence[Completion], ActionLimits, AnomalyConfig], Reason | None]

RULES: tuple[Rule, ...] = (points_per_window, too_fast, repeated_action, action_daily_cap, ip_hop)


def status_for_risk(risk: int, config: AnomalyConfig) -> ScoreStatus:
    if risk >= config.hold_threshold:
        return ScoreStatus.HELD
    if risk >= config.flag_threshold:
        return ScoreStatus.FLAGGED
    return ScoreStatus.COUNTED


def assess(
    update: Completion,
    history: Sequence[Completion],
    action: ActionLimits,
    config: AnomalyConfig,
) -> Assessment:
    """Run every rule on `update`, given the player's earlier completions (`history`, any
    order, not including `update`). Tripped rules are kept even when their weight is 0, so a
    rule can be watched in `risk_reasons` before it is given a say."""
    reasons = tuple(
        reason for rule in RULES if (reason := rule(update, history, action, config)) is not None
    )
    return Assessment(
        reasons=reasons,
        status=status_for_risk(sum(reason.weight for reason in reasons), config),
    )
