"""The Redis member carries the tie order exactly: its reverse byte order is the board order
among equal scores (earlier first, then lower user id), and it decodes back losslessly."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from leaderboard.backends.redis import decode_member, member_for

moments = st.datetimes(
    min_value=datetime(2000, 1, 1),  # noqa: DTZ001 (hypothesis wants naive bounds)
    max_value=datetime(2200, 1, 1),  # noqa: DTZ001
    timezones=st.just(UTC),
)
user_ids = st.uuids()


@given(moment=moments, user_id=user_ids)
def test_a_member_decodes_to_exactly_what_it_encodes(moment: datetime, user_id: uuid.UUID) -> None:
    assert decode_member(member_for(user_id, moment)) == (user_id, moment)


@given(a=st.tuples(moments, user_ids), b=st.tuples(moments, user_ids))
def test_reverse_member_order_is_first_to_reach_then_lowest_id(
    a: tuple[datetime, uuid.UUID], b: tuple[datetime, uuid.UUID]
) -> None:
    member_a, member_b = member_for(a[1], a[0]), member_for(b[1], b[0])
    board_order_a_first = (a[0], a[1].int) < (b[0], b[1].int)

    assert len(member_a) == len(member_b)
    # ZREVRANGE lists equal scores by descending member bytes.
    assert (member_a.encode() > member_b.encode()) == board_order_a_first
