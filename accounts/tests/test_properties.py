"""Property tests: whatever a client sends, the accounts API answers in the envelope with a
4xx or a success, never a 5xx, and a refused request leaves no trace in the database."""

from __future__ import annotations

import json
from typing import Any

from django.core.cache import cache
from hypothesis import event, given, settings
from hypothesis import strategies as st
from hypothesis.extra.django import TestCase
from rest_framework import status
from rest_framework.test import APIClient

from accounts.models import User
from accounts.tests.helpers import ME_URL, REFRESH_URL, REGISTER_URL, UtcTimestamp
from conftest import TEST_PASSWORD
from scoreboard.ratelimit import reset_local_counters

REGISTER_FIELDS = ["username", "email", "password", "country", "avatar"]
PROFILE_FIELDS = ["country", "avatar", "hideFromLeaderboards"]
VALID_REGISTRATION = {
    "username": "NewPlayer_1",
    "email": "new@example.com",
    "password": TEST_PASSWORD,
    "country": "gb",
    "avatar": "https://cdn.example.com/a.png",
}
VALID_PROFILE_CHANGE = {"country": "de", "hideFromLeaderboards": True}

# Any JSON value (finite numbers only: JSON has no NaN or Infinity).
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)
# Values that pass some field's validation, so that some examples get past the serializer.
plausible_values = st.sampled_from(
    [
        "NewPlayer_1",
        "Player.Two",
        "new@example.com",
        "OTHER@Example.COM",
        TEST_PASSWORD,
        "password",
        "gb",
        "US",
        "",
        "https://cdn.example.com/a.png",
        True,
        False,
    ]
)


def bodies(
    field_names: list[str], valid: dict[str, Any] | None = None
) -> st.SearchStrategy[dict[str, Any]]:
    """Objects over the real field names and random keys; with `valid`, also that valid body
    with a few fields replaced or added (so that some examples get through)."""
    keys = st.sampled_from(field_names) | st.text(max_size=12)
    values = plausible_values | json_values
    anything = st.dictionaries(keys, values, max_size=len(field_names) + 2)
    if valid is None:
        return anything
    changes = st.dictionaries(keys, values, max_size=2) | st.dictionaries(
        st.sampled_from(field_names), plausible_values, max_size=2
    )
    return anything | st.builds(lambda change: {**valid, **change}, changes)


# What a real server can put in a header value: latin-1, no control characters.
header_text = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
    max_size=300,
)
token_like_text = header_text | st.builds(
    lambda a, b, c: f"{a}.{b}.{c}",
    st.text(
        alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", max_size=60
    ),
    st.text(
        alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", max_size=60
    ),
    st.text(
        alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", max_size=60
    ),
)

EXAMPLES = settings(max_examples=60, deadline=None, database=None)


class EnvelopeAssertions(TestCase):
    def setUp(self) -> None:
        super().setUp()
        cache.clear()

    def setup_example(self) -> None:
        super().setup_example()
        # Each example is a fresh client within the rate limits (auth: 20/min per address).
        cache.clear()
        reset_local_counters()

    def assert_error_envelope(self, response: Any, code: str) -> None:
        body = response.json()
        error = body["error"]
        assert set(body) == {"success", "error"}, body
        assert body["success"] is False, body
        assert error["code"] == code, body
        assert isinstance(error["message"], str), body
        assert error["timestamp"] == UtcTimestamp(), body
        assert error["requestId"] == response["X-Request-ID"], body
        assert set(error) <= {"code", "message", "details", "timestamp", "requestId"}, body


class RegisterProperties(EnvelopeAssertions):
    @EXAMPLES
    @given(body=bodies(REGISTER_FIELDS, VALID_REGISTRATION))
    def test_register_answers_201_or_400_and_a_refusal_creates_nobody(
        self, body: dict[str, Any]
    ) -> None:
        # when any JSON object is posted to register
        response = APIClient().post(REGISTER_URL, json.dumps(body), content_type="application/json")

        # then it is created or refused as invalid input, and a refusal leaves no user
        event(f"HTTP {response.status_code}")
        assert response.status_code in (status.HTTP_201_CREATED, status.HTTP_400_BAD_REQUEST), (
            response.status_code,
            response.content,
        )
        if response.status_code == status.HTTP_201_CREATED:
            assert User.objects.count() == 1
            assert response.json()["data"]["id"] == str(User.objects.get().pk)
        else:
            assert not User.objects.exists()
            self.assert_error_envelope(response, "INVALID_INPUT")
            assert response.json()["error"]["details"], response.content


class BearerTokenProperties(EnvelopeAssertions):
    @EXAMPLES
    @given(token=token_like_text)
    def test_any_text_as_bearer_token_is_unauthorized(self, token: str) -> None:
        # when arbitrary text is presented as the bearer token
        response = APIClient().get(ME_URL, HTTP_AUTHORIZATION=f"Bearer {token}")

        # then it is always 401 in the envelope
        assert response.status_code == status.HTTP_401_UNAUTHORIZED, response.content
        self.assert_error_envelope(response, "UNAUTHORIZED")

    @EXAMPLES
    @given(token=token_like_text)
    def test_any_text_as_refresh_token_is_refused(self, token: str) -> None:
        # when arbitrary text is exchanged as a refresh token
        response = APIClient().post(
            REFRESH_URL, json.dumps({"refreshToken": token}), content_type="application/json"
        )

        # then it is refused in the envelope: 400 when it is not an acceptable string, else
        # as unauthorized (the exact 401 is asserted by test_api_token), never a 5xx
        assert status.HTTP_400_BAD_REQUEST <= response.status_code < 500, response.content
        code = "INVALID_INPUT" if response.status_code == 400 else "UNAUTHORIZED"
        self.assert_error_envelope(response, code)


class ProfileProperties(EnvelopeAssertions):
    @EXAMPLES
    @given(body=bodies(PROFILE_FIELDS, VALID_PROFILE_CHANGE))
    def test_patch_answers_200_or_400_and_a_refusal_changes_nothing(
        self, body: dict[str, Any]
    ) -> None:
        # given a player
        user = User.objects.create_user(
            username="ProGamer123", email="pro@example.com", password=TEST_PASSWORD, country="US"
        )
        client = APIClient()
        client.force_authenticate(user)
        before = User.objects.values().get(pk=user.pk)

        # when any JSON object is sent as a profile change
        response = client.patch(ME_URL, json.dumps(body), content_type="application/json")

        # then it is applied or refused, and a refusal changes nothing
        event(f"HTTP {response.status_code}")
        assert response.status_code in (status.HTTP_200_OK, status.HTTP_400_BAD_REQUEST), (
            response.status_code,
            response.content,
        )
        if response.status_code == status.HTTP_400_BAD_REQUEST:
            self.assert_error_envelope(response, "INVALID_INPUT")
            assert User.objects.values().get(pk=user.pk) == before
        else:
            assert set(body) <= set(PROFILE_FIELDS)
