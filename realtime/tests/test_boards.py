from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from realtime.boards import channels_showing, live_channel
from scoring.periods import Period


@pytest.mark.parametrize(
    ("name", "period", "country"),
    [
        ("leaderboard.top10", Period.ALL_TIME, ""),
        ("leaderboard.daily.top10", Period.DAILY, ""),
        ("leaderboard.weekly.top10", Period.WEEKLY, ""),
        ("leaderboard.monthly.top10", Period.MONTHLY, ""),
        ("leaderboard.country.US.top10", Period.ALL_TIME, "US"),
    ],
)
def test_known_channels(name: str, period: str, country: str) -> None:
    channel = live_channel(name)
    assert channel is not None
    assert (channel.name, channel.period, channel.country) == (name, period, country)


@pytest.mark.parametrize(
    "name",
    [
        None,
        42,
        ["leaderboard.top10"],
        "",
        "leaderboard.top100",
        "leaderboard.TOP10",
        "leaderboard.top10 ",
        "leaderboard.country.us.top10",
        "leaderboard.country.XX.top10",
        "leaderboard.country.USA.top10",
        "leaderboard.country..top10",
        "leaderboard.yearly.top10",
    ],
)
def test_anything_else_is_no_channel(name: object) -> None:
    assert live_channel(name) is None


@given(st.text(max_size=60))
def test_a_channel_is_only_ever_one_of_the_published_names(name: str) -> None:
    channel = live_channel(name)
    if channel is not None:
        assert channel.name == name
        assert channel.name.startswith("leaderboard.")
        assert channel.name.endswith(".top10")


def test_group_names_are_valid_channel_layer_groups() -> None:
    from channels.layers import BaseChannelLayer

    channel = live_channel("leaderboard.country.DE.top10")
    assert channel is not None
    assert BaseChannelLayer().require_valid_group_name(channel.group)


def test_a_players_change_shows_on_every_period_and_their_countries() -> None:
    names = [c.name for c in channels_showing(board="global", countries=["FR", "", "FR", "JP"])]
    assert names == [
        "leaderboard.top10",
        "leaderboard.daily.top10",
        "leaderboard.weekly.top10",
        "leaderboard.monthly.top10",
        "leaderboard.country.FR.top10",
        "leaderboard.country.JP.top10",
    ]


def test_other_boards_have_no_live_channels_yet() -> None:
    assert channels_showing(board="speedrun", countries=["FR"]) == []
