"""POST /api/v1/auth/register: who may become a player, and what a bad request leaves behind."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.hashers import identify_hasher
from rest_framework import status
from rest_framework.test import APIClient

from accounts.models import User
from accounts.tests.helpers import REGISTER_URL, assert_error, iso
from conftest import TEST_PASSWORD

pytestmark = pytest.mark.django_db

VALID_BODY: dict[str, Any] = {
    "username": "NewPlayer_1",
    "email": "New.Player@Example.COM",
    "password": TEST_PASSWORD,
    "country": "gb",
    "avatar": "https://cdn.example.com/avatars/new-player.png",
}
UNKNOWN = ["Unknown field."]
REQUIRED = ["This field is required."]
NOT_A_STRING = ["Not a valid string."]
NUL = ["Null characters are not allowed."]
BAD_URL = ["Enter a valid URL."]
BAD_USERNAME = ["Use letters, digits, underscore, dot and hyphen only."]


def body_with(**changes: Any) -> dict[str, Any]:
    """The valid body with fields replaced; a value of `...` removes the field."""
    body = dict(VALID_BODY)
    for name, value in changes.items():
        if value is ...:
            body.pop(name, None)
        else:
            body[name] = value
    return body


def first_message(details: dict[str, list[str]]) -> str:
    field, messages = next(iter(details.items()))
    return f"{field}: {messages[0]}"


def assert_rejected(response: Any, details: dict[str, list[str]]) -> None:
    assert_error(
        response,
        status_code=status.HTTP_400_BAD_REQUEST,
        code="INVALID_INPUT",
        message=first_message(details),
        details=details,
    )


# --- success -------------------------------------------------------------------------------


def test_register_creates_the_user_and_returns_the_profile(api_client: APIClient) -> None:
    # given a valid body
    # when it is posted
    response = api_client.post(REGISTER_URL, VALID_BODY, format="json")

    # then the account exists and the profile comes back with the normalised values
    assert response.status_code == status.HTTP_201_CREATED, response.content
    user = User.objects.get()
    assert response.json() == {
        "success": True,
        "data": {
            "id": str(user.pk),
            "username": "NewPlayer_1",
            "email": "New.Player@example.com",
            "country": "GB",
            "avatar": "https://cdn.example.com/avatars/new-player.png",
            "role": "user",
            "hideFromLeaderboards": False,
            "createdAt": iso(user.created_at),
            "lastActive": iso(user.last_active_at),
        },
        "message": "Account created",
    }


def test_register_stores_the_normalised_row(api_client: APIClient) -> None:
    # when a player registers with a mixed-case email domain and a lower-case country
    api_client.post(REGISTER_URL, VALID_BODY, format="json")

    # then the row holds the lower-cased domain (local part kept) and the upper-cased country
    user = User.objects.get()
    assert (user.username, user.email, user.country, user.avatar, user.role) == (
        "NewPlayer_1",
        "New.Player@example.com",
        "GB",
        "https://cdn.example.com/avatars/new-player.png",
        "user",
    )
    assert (user.is_active, user.hide_from_leaderboards) == (True, False)


def test_register_hashes_the_password_and_never_returns_it(api_client: APIClient) -> None:
    # when a player registers
    response = api_client.post(REGISTER_URL, VALID_BODY, format="json")

    # then the password is stored only as a hash, and appears nowhere in the response
    user = User.objects.get()
    assert user.password != TEST_PASSWORD
    identify_hasher(user.password)  # a recognised hash format
    assert user.check_password(TEST_PASSWORD)
    assert "password" not in response.json()["data"]
    assert TEST_PASSWORD not in response.content.decode()


def test_register_with_only_the_required_fields(api_client: APIClient) -> None:
    # given a body without the optional country and avatar
    body = body_with(country=..., avatar=...)

    # when it is posted
    response = api_client.post(REGISTER_URL, body, format="json")

    # then the user is created with empty country and avatar
    assert response.status_code == status.HTTP_201_CREATED, response.content
    user = User.objects.get()
    assert (user.country, user.avatar) == ("", "")


# --- bad input: 400 INVALID_INPUT, naming the field, and no user ---------------------------

BAD_BODIES = [
    pytest.param(body_with(username=...), {"username": REQUIRED}, id="missing-username"),
    pytest.param(body_with(email=...), {"email": REQUIRED}, id="missing-email"),
    pytest.param(body_with(password=...), {"password": REQUIRED}, id="missing-password"),
    pytest.param(
        {},
        {"username": REQUIRED, "email": REQUIRED, "password": REQUIRED},
        id="empty-object",
    ),
    pytest.param(body_with(role="admin"), {"role": UNKNOWN}, id="unknown-role-escalation"),
    pytest.param(body_with(is_staff=True), {"is_staff": UNKNOWN}, id="unknown-is-staff"),
    pytest.param(
        body_with(id="00000000-0000-0000-0000-000000000001"), {"id": UNKNOWN}, id="unknown-id"
    ),
    pytest.param(body_with(username=12345), {"username": NOT_A_STRING}, id="username-int"),
    pytest.param(
        body_with(username=None), {"username": ["This field may not be null."]}, id="username-null"
    ),
    pytest.param(
        body_with(email=["a@example.com"]),
        {"email": ["Enter a valid email address."]},
        id="email-list",
    ),
    pytest.param(
        body_with(password=[TEST_PASSWORD]), {"password": NOT_A_STRING}, id="password-list"
    ),
    pytest.param(body_with(country=True), {"country": NOT_A_STRING}, id="country-true"),
    pytest.param(
        body_with(avatar={"url": "https://x.example"}), {"avatar": BAD_URL}, id="avatar-object"
    ),
    pytest.param(
        body_with(username="a" * 33),
        {"username": ["Ensure this field has no more than 32 characters."]},
        id="username-33-chars",
    ),
    pytest.param(
        body_with(email="x" * 243 + "@example.com"),
        {"email": ["Ensure this field has no more than 254 characters."]},
        id="email-255-chars",
    ),
    pytest.param(
        body_with(avatar="https://cdn.example.com/" + "a" * 477),
        {"avatar": ["Ensure this field has no more than 500 characters."]},
        id="avatar-501-chars",
    ),
    pytest.param(
        body_with(password="Zq7#" * 32 + "x"),
        {"password": ["Ensure this field has no more than 128 characters."]},
        id="password-129-chars",
    ),
    pytest.param(
        body_with(username="ab"),
        {"username": ["Ensure this value has at least 3 characters (it has 2)."]},
        id="username-too-short",
    ),
    pytest.param(body_with(username="pro gamer"), {"username": BAD_USERNAME}, id="username-space"),
    pytest.param(
        body_with(username="Jürgen"), {"username": BAD_USERNAME}, id="username-latin-accent"
    ),
    pytest.param(body_with(username="игрок"), {"username": BAD_USERNAME}, id="username-cyrillic"),
    pytest.param(body_with(username="<script>"), {"username": BAD_USERNAME}, id="username-markup"),
    pytest.param(body_with(username="pro\x00gamer"), {"username": NUL}, id="username-nul"),
    pytest.param(
        body_with(password="correct horse\x00battery"), {"password": NUL}, id="password-nul"
    ),
    pytest.param(
        body_with(email="not-an-email"),
        {"email": ["Enter a valid email address."]},
        id="email-invalid",
    ),
    pytest.param(
        body_with(email="player@"),
        {"email": ["Enter a valid email address."]},
        id="email-no-domain",
    ),
    pytest.param(
        body_with(country="XX"),
        {"country": ["'XX' is not an ISO 3166-1 alpha-2 country code."]},
        id="country-XX",
    ),
    pytest.param(
        body_with(country="USA"),
        {"country": ["Ensure this field has no more than 2 characters."]},
        id="country-USA",
    ),
    pytest.param(body_with(avatar="not a url"), {"avatar": BAD_URL}, id="avatar-not-url"),
    pytest.param(
        body_with(avatar="javascript:alert(document.cookie)"),
        {"avatar": BAD_URL},
        id="avatar-javascript",
    ),
    pytest.param(
        body_with(avatar="data:text/html,<script>alert(1)</script>"),
        {"avatar": BAD_URL},
        id="avatar-data",
    ),
]


@pytest.mark.parametrize(("body", "details"), BAD_BODIES)
def test_bad_input_is_refused_and_creates_no_user(
    api_client: APIClient, body: dict[str, Any], details: dict[str, list[str]]
) -> None:
    # given a body with one defect
    # when it is posted
    response = api_client.post(REGISTER_URL, body, format="json")

    # then it is refused naming the field, and nobody was created
    assert_rejected(response, details)
    assert User.objects.count() == 0


WEAK_PASSWORDS = [
    pytest.param("password", ["This password is too common."], id="common"),
    pytest.param(
        "12345678",
        ["This password is too common.", "This password is entirely numeric."],
        id="numeric",
    ),
    pytest.param(
        "Qwx7!pz",
        ["This password is too short. It must contain at least 8 characters."],
        id="short",
    ),
    pytest.param(
        "zorblaxquux9", ["The password is too similar to the username."], id="like-username"
    ),
]


@pytest.mark.parametrize(("password", "messages"), WEAK_PASSWORDS)
def test_weak_password_is_refused_under_the_password_field(
    api_client: APIClient, password: str, messages: list[str]
) -> None:
    # given a password that fails one of Django's validators
    body = body_with(username="zorblaxquux", password=password)

    # when it is posted
    response = api_client.post(REGISTER_URL, body, format="json")

    # then the validator's messages are reported under "password", and nobody was created
    assert_rejected(response, {"password": messages})
    assert User.objects.count() == 0


@pytest.mark.parametrize(
    ("existing", "body", "details"),
    [
        pytest.param(
            {"username": "ProGamer123", "email": "pro@example.com"},
            body_with(username="progamer123"),
            {"username": ["A user with that username already exists."]},
            id="username-other-case",
        ),
        pytest.param(
            {"username": "ProGamer123", "email": "pro@example.com"},
            body_with(email="PRO@Example.com"),
            {"email": ["A user with that email already exists."]},
            id="email-other-case",
        ),
    ],
)
def test_duplicate_is_refused_case_insensitively(
    api_client: APIClient,
    make_user: Any,
    existing: dict[str, str],
    body: dict[str, Any],
    details: dict[str, list[str]],
) -> None:
    # given a registered player
    make_user(**existing)

    # when someone registers the same name or email in another case
    response = api_client.post(REGISTER_URL, body, format="json")

    # then it is refused and still only the first player exists
    assert_rejected(response, details)
    assert list(User.objects.values_list("username", flat=True)) == [existing["username"]]


def test_country_is_refused_when_only_unicode_case_mapping_makes_it_a_code(
    api_client: APIClient,
) -> None:
    # given a country that is not an ISO code but upper-cases to one: U+0131 (dotless i)
    # followed by "t" becomes "IT"
    body = body_with(country="\u0131t")

    # when it is posted
    response = api_client.post(REGISTER_URL, body, format="json")

    # then it is refused (the country must be two ASCII letters before normalisation)
    assert response.status_code == status.HTTP_400_BAD_REQUEST, response.content
    assert response.json()["error"]["code"] == "INVALID_INPUT"
    assert list(response.json()["error"]["details"]) == ["country"]
    assert User.objects.count() == 0


# --- bodies that are not a JSON object -----------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        pytest.param("[]", "Invalid data. Expected a dictionary, but got list.", id="list"),
        pytest.param(
            '[{"username": "NewPlayer_1"}]',
            "Invalid data. Expected a dictionary, but got list.",
            id="list-of-object",
        ),
        pytest.param(
            '"NewPlayer_1"', "Invalid data. Expected a dictionary, but got str.", id="string"
        ),
        pytest.param("null", "No data provided", id="null"),
    ],
)
def test_body_that_is_not_an_object_is_refused(
    api_client: APIClient, raw: str, message: str
) -> None:
    # when the JSON body is valid JSON but not an object
    response = api_client.post(REGISTER_URL, raw, content_type="application/json")

    # then it is refused as a whole-body error, in the envelope's camelCase, and nobody exists
    assert_error(
        response,
        status_code=status.HTTP_400_BAD_REQUEST,
        code="INVALID_INPUT",
        message=message,
        details={"nonFieldErrors": [message]},
    )
    assert User.objects.count() == 0


def test_malformed_json_is_refused(api_client: APIClient) -> None:
    # when the body is not JSON at all
    response = api_client.post(REGISTER_URL, '{"username": ', content_type="application/json")

    # then it is refused as malformed and nobody exists
    assert_error(
        response,
        status_code=status.HTTP_400_BAD_REQUEST,
        code="INVALID_INPUT",
        message="Malformed request body: JSON parse error - Expecting value: line 1 column 14 "
        "(char 13)",
    )
    assert User.objects.count() == 0


@pytest.mark.parametrize(
    "content_type",
    ["application/x-www-form-urlencoded", "multipart/form-data; boundary=xyz", "text/plain"],
)
def test_non_json_body_is_unsupported_media_type(api_client: APIClient, content_type: str) -> None:
    # when the body is sent with a content type other than JSON
    response = api_client.post(
        REGISTER_URL, "username=NewPlayer_1&password=x", content_type=content_type
    )

    # then it is refused with 415 and nobody exists
    media_type = content_type.split(";")[0] if "multipart" not in content_type else content_type
    assert_error(
        response,
        status_code=status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
        code="UNSUPPORTED_MEDIA_TYPE",
        message=f'Unsupported media type "{media_type}" in request.',
    )
    assert User.objects.count() == 0
