"""Properties of the checks that decide whether a claim of points is authentic
(scoring/anticheat.py): a client signature verifies exactly when it is the HMAC of that very
message under one of the player's keys, and a timestamp passes exactly inside its window."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.test import override_settings
from hypothesis import assume, given
from hypothesis import strategies as st

from scoreboard.errors import InvalidInput
from scoring.anticheat import check_client_signature, check_timestamp_window, hmac_sha256_hex
from scoring.exceptions import InvalidClientSignature

keys = st.text(min_size=1, max_size=64)
messages = st.text(max_size=200)
NOW = datetime(2026, 11, 27, 10, 30, tzinfo=UTC)
SKEW_SECONDS = 5


@given(key_ring=st.lists(keys, min_size=1, max_size=3), message=messages, data=st.data())
def test_the_hmac_under_any_of_the_players_keys_verifies_in_either_case(
    key_ring: list[str], message: str, data: st.DataObject
) -> None:
    signing_key = data.draw(st.sampled_from(key_ring))
    signature = hmac_sha256_hex(signing_key, message)
    check_client_signature(keys=key_ring, message=message, signature=signature)
    check_client_signature(keys=key_ring, message=message, signature=signature.upper())


@given(key=keys, message=messages, other=messages)
def test_a_signature_of_another_message_is_refused(key: str, message: str, other: str) -> None:
    assume(other != message)
    with pytest.raises(InvalidClientSignature):
        check_client_signature(keys=[key], message=message, signature=hmac_sha256_hex(key, other))


@given(key=keys, other_key=keys, message=messages)
def test_a_signature_under_another_key_is_refused(key: str, other_key: str, message: str) -> None:
    assume(other_key != key)
    with pytest.raises(InvalidClientSignature):
        check_client_signature(
            keys=[key], message=message, signature=hmac_sha256_hex(other_key, message)
        )


@given(
    key=keys,
    message=messages,
    position=st.integers(min_value=0, max_value=63),
    digit=st.sampled_from("0123456789abcdef"),
)
def test_any_one_changed_digit_is_refused(
    key: str, message: str, position: int, digit: str
) -> None:
    signature = hmac_sha256_hex(key, message)
    assume(signature[position] != digit)
    forged = signature[:position] + digit + signature[position + 1 :]
    with pytest.raises(InvalidClientSignature):
        check_client_signature(keys=[key], message=message, signature=forged)


@given(offset=st.integers(min_value=-3_600_000, max_value=3_600_000), max_age=st.integers(1, 600))
def test_a_timestamp_passes_exactly_inside_its_window(offset: int, max_age: int) -> None:
    """`offset` milliseconds from now: not older than `max_age` seconds, not ahead by more
    than the clock skew."""
    moment = NOW + timedelta(milliseconds=offset)
    inside = -max_age * 1000 <= offset <= SKEW_SECONDS * 1000
    with override_settings(SCOREBOARD_CLOCK_SKEW_SECONDS=SKEW_SECONDS):
        if inside:
            check_timestamp_window(moment, now=NOW, max_age_seconds=max_age)
        else:
            with pytest.raises(InvalidInput):
                check_timestamp_window(moment, now=NOW, max_age_seconds=max_age)
