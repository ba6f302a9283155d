"""Live channels: the names clients subscribe to and the board each one shows."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from accounts.countries import COUNTRY_CODES
from leaderboard.backends.base import BoardKey
from leaderboard.selectors import board_key
from scoring.periods import DEFAULT_BOARD, Period

LIVE_BOARD_SIZE = 10

_PERIOD_CHANNELS = {
    "leaderboard.top10": Period.ALL_TIME,
    "leaderboard.daily.top10": Period.DAILY,
    "leaderboard.weekly.top10": Period.WEEKLY,
    "leaderboard.monthly.top10": Period.MONTHLY,
}
_COUNTRY_CHANNEL = re.compile(r"leaderboard\.country\.([A-Z]{2})\.top10")
MAX_CHANNEL_LENGTH = 40
# What a channel name looks like, for the OpenAPI schema (an unknown country still is no channel).
CHANNEL_NAME_PATTERN = (
    "^(" + "|".join([*map(re.escape, _PERIOD_CHANNELS), _COUNTRY_CHANNEL.pattern]) + ")$"
)


@dataclass(frozen=True)
class LiveChannel:
    """A subscribable channel: the top of one board bucket, the current one of its period."""

    name: str
    period: str
    country: str = ""
    board: str = DEFAULT_BOARD

    @property
    def group(self) -> str:
        """The channel-layer group every node's hub joins for this channel."""
        return f"live.{self.board}.{self.name}"

    def key(self, at: datetime | None = None) -> BoardKey:
        return board_key(period=self.period, country=self.country, board=self.board, at=at)


def live_channel(name: object) -> LiveChannel | None:
    """The channel a client named, or None for anything that is not one."""
    if not isinstance(name, str) or len(name) > MAX_CHANNEL_LENGTH:
        return None
    period = _PERIOD_CHANNELS.get(name)
    if period is not None:
        return LiveChannel(name=name, period=period)
    match = _COUNTRY_CHANNEL.fullmatch(name)
    if match is not None and match[1] in COUNTRY_CODES:
        return LiveChannel(name=name, period=Period.ALL_TIME, country=match[1])
    return None


def period_channels() -> list[LiveChannel]:
    return [LiveChannel(name=name, period=period) for name, period in _PERIOD_CHANNELS.items()]


def channels_showing(*, board: str, countries: list[str]) -> list[LiveChannel]:
    """Every channel a change to a player of `countries` on `board` may show on."""
    if board != DEFAULT_BOARD:
        return []
    channels = period_channels()
    for country in dict.fromkeys(countries):
        if country:
            channel = live_channel(f"leaderboard.country.{country}.top10")
            if channel is not None:
                channels.append(channel)
    return channels
