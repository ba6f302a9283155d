"""GET/PATCH /api/v1/users/me and POST /api/v1/users/me/signing-key/rotate."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework import status
from rest_framework.test import APIClient

from accounts.models import User
from accounts.selectors import user_signing_key
from accounts.tests.helpers import (
    HEX_KEY,
    ME_URL,
    ROTATE_URL,
    TOKEN_URL,
    assert_error,
    assert_invalid,
    profile,
)
from conftest import TEST_PASSWORD

UNRANKED = {"score": 0, "rank": None}

pytestmark = pytest.mark.django_db


def stored(user: User) -> dict[str, Any]:
    """Every column a profile request could touch, as stored."""
    return dict(
        User.objects.filter(pk=user.pk).values(
            "username",
            "email",
            "country",
            "avatar",
            "role",
            "is_active",
            "hide_from_leaderboards",
            "password",
            "signing_key_version",
        )[0]
    )


# --- GET -----------------------------------------------------------------------------------


def test_get_returns_the_callers_profile(auth_client: APIClient, user: User) -> None:
    # when the player asks for their profile
    response = auth_client.get(ME_URL)

    # then exactly the public profile fields come back, with the all-time score and rank
    assert response.status_code == status.HTTP_200_OK, response.content
    assert response.json() == {"success": True, "data": {**profile(user), **UNRANKED}}
    assert set(response.json()["data"]) == {
        "id",
        "username",
        "email",
        "country",
        "avatar",
        "role",
        "hideFromLeaderboards",
        "createdAt",
        "lastActive",
        "score",
        "rank",
    }


def test_get_never_exposes_secrets(auth_client: APIClient, user: User) -> None:
    # when the player asks for their profile
    body = auth_client.get(ME_URL).content.decode()

    # then neither the password hash nor the signing key is in it
    user.refresh_from_db()
    assert user.password not in body
    assert user_signing_key(user) not in body


# --- PATCH ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "column", "value"),
    [
        pytest.param({"country": "de"}, "country", "DE", id="country-lower"),
        pytest.param({"country": "FR"}, "country", "FR", id="country-upper"),
        pytest.param({"country": ""}, "country", "", id="country-cleared"),
        pytest.param(
            {"avatar": "https://cdn.example.com/me.png"},
            "avatar",
            "https://cdn.example.com/me.png",
            id="avatar",
        ),
        pytest.param({"hideFromLeaderboards": True}, "hide_from_leaderboards", True, id="hide"),
    ],
)
def test_patch_updates_the_row(
    auth_client: APIClient, user: User, body: dict[str, Any], column: str, value: Any
) -> None:
    # given a player with a country and no avatar
    # when they change one profile field
    response = auth_client.patch(ME_URL, body, format="json")

    # then the row holds the new value and the response is the updated profile
    assert response.status_code == status.HTTP_200_OK, response.content
    assert User.objects.values_list(column, flat=True).get(pk=user.pk) == value
    assert response.json() == {"success": True, "data": {**profile(user), **UNRANKED}}


def test_patch_updates_several_fields_at_once(auth_client: APIClient, user: User) -> None:
    # when the player changes everything they may change
    response = auth_client.patch(
        ME_URL,
        {"country": "jp", "avatar": "https://cdn.example.com/me.png", "hideFromLeaderboards": True},
        format="json",
    )

    # then all of it is stored
    assert response.status_code == status.HTTP_200_OK, response.content
    user.refresh_from_db()
    assert (user.country, user.avatar, user.hide_from_leaderboards) == (
        "JP",
        "https://cdn.example.com/me.png",
        True,
    )


def test_patch_can_unhide(auth_client: APIClient, user: User) -> None:
    # given a hidden player
    User.objects.filter(pk=user.pk).update(hide_from_leaderboards=True)

    # when they unhide
    response = auth_client.patch(ME_URL, {"hideFromLeaderboards": False}, format="json")

    # then they are visible again
    assert response.status_code == status.HTTP_200_OK, response.content
    assert User.objects.get(pk=user.pk).hide_from_leaderboards is False


@pytest.mark.parametrize(
    "field",
    ["role", "username", "is_active", "email", "is_staff", "id", "signing_key_version"],
)
def test_patch_refuses_fields_the_player_may_not_change(
    auth_client: APIClient, user: User, field: str
) -> None:
    # given the stored row
    before = stored(user)

    # when the player tries to change a field outside the profile (privilege escalation)
    response = auth_client.patch(ME_URL, {field: "admin"}, format="json")

    # then it is refused and nothing changed
    assert_invalid(response, {field: ["Unknown field."]})
    assert stored(user) == before


def test_patch_with_an_unknown_field_changes_nothing_else(
    auth_client: APIClient, user: User
) -> None:
    # given the stored row
    before = stored(user)

    # when an allowed change comes together with a forbidden one
    response = auth_client.patch(ME_URL, {"country": "DE", "role": "admin"}, format="json")

    # then the whole request is refused
    assert_invalid(response, {"role": ["Unknown field."]})
    assert stored(user) == before


def test_patch_with_one_invalid_value_changes_nothing(auth_client: APIClient, user: User) -> None:
    # given the stored row
    before = stored(user)

    # when a valid avatar comes with an invalid country
    response = auth_client.patch(
        ME_URL, {"country": "ZZ", "avatar": "https://cdn.example.com/me.png"}, format="json"
    )

    # then it is refused and neither is stored
    assert_invalid(response, {"country": ["'ZZ' is not an ISO 3166-1 alpha-2 country code."]})
    assert stored(user) == before


@pytest.mark.parametrize(
    ("body", "details"),
    [
        pytest.param(
            {"hideFromLeaderboards": "true"},
            {"hideFromLeaderboards": ["A JSON boolean (true or false) is required."]},
            id="hide-string",
        ),
        pytest.param(
            {"hideFromLeaderboards": 1},
            {"hideFromLeaderboards": ["A JSON boolean (true or false) is required."]},
            id="hide-one",
        ),
        pytest.param(
            {"hideFromLeaderboards": 0},
            {"hideFromLeaderboards": ["A JSON boolean (true or false) is required."]},
            id="hide-zero",
        ),
        pytest.param(
            {"hideFromLeaderboards": None},
            {"hideFromLeaderboards": ["This field may not be null."]},
            id="hide-null",
        ),
        pytest.param({"country": 49}, {"country": ["Not a valid string."]}, id="country-int"),
        pytest.param(
            {"country": "DEU"},
            {"country": ["Ensure this field has no more than 2 characters."]},
            id="country-alpha-3",
        ),
        pytest.param(
            {"avatar": "javascript:alert(1)"},
            {"avatar": ["Enter a valid URL."]},
            id="avatar-javascript",
        ),
        pytest.param(
            {"avatar": "https://cdn.example.com/\x00.png"},
            {"avatar": ["Null characters are not allowed."]},
            id="avatar-nul",
        ),
    ],
)
def test_patch_with_a_wrongly_typed_value_is_refused(
    auth_client: APIClient, user: User, body: dict[str, Any], details: dict[str, list[str]]
) -> None:
    # given the stored row
    before = stored(user)

    # when a value is of the wrong type or form
    response = auth_client.patch(ME_URL, body, format="json")

    # then it is refused and nothing changed
    assert_invalid(response, details)
    assert stored(user) == before


def test_patch_with_an_empty_body_changes_nothing(auth_client: APIClient, user: User) -> None:
    # given the stored row
    before = stored(user)

    # when the player sends an empty object
    response = auth_client.patch(ME_URL, {}, format="json")

    # then the profile comes back unchanged
    assert response.status_code == status.HTTP_200_OK, response.content
    assert response.json() == {"success": True, "data": {**profile(user), **UNRANKED}}
    assert stored(user) == before


def test_patch_without_a_token_is_unauthorized(api_client: APIClient, user: User) -> None:
    # given the stored row
    before = stored(user)

    # when someone without a token tries to change the profile
    response = api_client.patch(ME_URL, {"hideFromLeaderboards": True}, format="json")

    # then it is refused and nothing changed
    assert_error(
        response,
        status_code=status.HTTP_401_UNAUTHORIZED,
        code="UNAUTHORIZED",
        message="Authentication credentials were not provided.",
    )
    assert stored(user) == before


# --- methods and formats -------------------------------------------------------------------


@pytest.mark.parametrize("method", ["put", "post"])
def test_unsupported_method_is_method_not_allowed(
    auth_client: APIClient, user: User, method: str
) -> None:
    # when the profile is called with a method it does not support
    response = getattr(auth_client, method)(ME_URL, {"country": "DE"}, format="json")

    # then the envelope says so, with the Allow header
    assert_error(
        response,
        status_code=status.HTTP_405_METHOD_NOT_ALLOWED,
        code="METHOD_NOT_ALLOWED",
        message=f'Method "{method.upper()}" not allowed.',
    )
    assert "GET" in response["Allow"]
    assert "PATCH" in response["Allow"]
    assert User.objects.get(pk=user.pk).country == "US"


def test_html_only_client_is_not_acceptable(auth_client: APIClient) -> None:
    # when the client accepts only HTML
    response = auth_client.get(ME_URL, HTTP_ACCEPT="text/html")

    # then it gets 406, in JSON all the same
    assert response["Content-Type"] == "application/json"
    assert_error(
        response,
        status_code=status.HTTP_406_NOT_ACCEPTABLE,
        code="NOT_ACCEPTABLE",
        message="Could not satisfy the request Accept header.",
    )


# --- signing-key rotation ------------------------------------------------------------------


def test_rotate_returns_a_new_key(auth_client: APIClient, user: User) -> None:
    # given the player's current signing key
    old_key = user_signing_key(user)

    # when they rotate it
    response = auth_client.post(ROTATE_URL)

    # then a different 64-hex key comes back, and it is the key the server now expects
    assert response.status_code == status.HTTP_200_OK, response.content
    new_key = response.json()["data"]["signingKey"]
    assert response.json() == {
        "success": True,
        "data": {"signingKey": new_key},
        "message": "Signing key rotated",
    }
    assert HEX_KEY.match(new_key)
    assert new_key != old_key
    user.refresh_from_db()
    assert user_signing_key(user) == new_key


def test_each_rotation_gives_another_key(auth_client: APIClient, user: User) -> None:
    # when the key is rotated three times
    keys = [auth_client.post(ROTATE_URL).json()["data"]["signingKey"] for _ in range(3)]

    # then every key is new
    assert len({user_signing_key(user), *keys}) == 4


def test_new_token_pair_carries_the_rotated_key(
    auth_client: APIClient, api_client: APIClient, user: User
) -> None:
    # given a rotated key
    new_key = auth_client.post(ROTATE_URL).json()["data"]["signingKey"]

    # when the player logs in again
    response = api_client.post(
        TOKEN_URL, {"username": "ProGamer123", "password": TEST_PASSWORD}, format="json"
    )

    # then the pair carries the rotated key
    assert response.status_code == status.HTTP_200_OK, response.content
    assert response.json()["data"]["signingKey"] == new_key


def test_rotation_touches_only_the_caller(
    auth_client: APIClient, user: User, make_user: Any
) -> None:
    # given another player
    other = make_user(username="Other_1", email="other@example.com")
    other_key = user_signing_key(other)

    # when the first player rotates their key
    auth_client.post(ROTATE_URL)

    # then the other player's key is unchanged
    other.refresh_from_db()
    assert user_signing_key(other) == other_key


def test_rotate_without_a_token_is_unauthorized(api_client: APIClient, user: User) -> None:
    # given the player's key
    key = user_signing_key(user)

    # when someone without a token asks for a rotation
    response = api_client.post(ROTATE_URL)

    # then it is refused and the key is unchanged
    assert_error(
        response,
        status_code=status.HTTP_401_UNAUTHORIZED,
        code="UNAUTHORIZED",
        message="Authentication credentials were not provided.",
    )
    user.refresh_from_db()
    assert user_signing_key(user) == key
