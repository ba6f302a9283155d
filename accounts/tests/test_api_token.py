"""POST /api/v1/auth/token and /api/v1/auth/token/refresh: the JWT pair and its claims."""

from __future__ import annotations

import time
import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from rest_framework import status
from rest_framework.test import APIClient

from accounts.models import Role, User
from accounts.selectors import user_signing_key
from accounts.tests.helpers import (
    HEX_KEY,
    REFRESH_URL,
    REGISTER_URL,
    TOKEN_URL,
    assert_error,
    assert_invalid,
    decode_jwt,
    profile,
    signed_jwt,
)
from conftest import TEST_PASSWORD
from scoreboard.config import Rate

pytestmark = pytest.mark.django_db

ACCESS_SECONDS = 24 * 3600
BAD_CREDENTIALS = "Invalid username or password."
REVOKED = "Invalid or revoked refresh token."
# Whatever made a verified token unusable (inactive, deleted, password changed), one message.
INVALID_TOKEN = "Invalid or expired authentication token."
ACCESS_CLAIMS = {
    "token_type",
    "exp",
    "iat",
    "jti",
    "sub",
    "hash_password",
    "username",
    "email",
    "role",
    "permissions",
    "aud",
    "iss",
}


def obtain(client: APIClient, username: str, password: str = TEST_PASSWORD) -> Any:
    return client.post(TOKEN_URL, {"username": username, "password": password}, format="json")


def refresh(client: APIClient, token: Any) -> Any:
    return client.post(REFRESH_URL, {"refreshToken": token}, format="json")


def obtain_pair(client: APIClient, user: User) -> dict[str, Any]:
    response = obtain(client, user.username)
    assert response.status_code == status.HTTP_200_OK, response.content
    return response.json()["data"]


def assert_unauthorized(response: Any, message: str, code: str = "UNAUTHORIZED") -> None:
    assert_error(response, status_code=status.HTTP_401_UNAUTHORIZED, code=code, message=message)


# --- obtaining a pair ----------------------------------------------------------------------


def test_token_pair_has_the_documented_fields(api_client: APIClient, user: User) -> None:
    # when the player logs in
    response = obtain(api_client, "ProGamer123")

    # then the pair, its lifetime, the signing key and the profile come back
    assert response.status_code == status.HTTP_200_OK, response.content
    body = response.json()
    data = body["data"]
    assert set(body) == {"success", "data"}
    assert body["success"] is True
    assert data == {
        "accessToken": data["accessToken"],
        "refreshToken": data["refreshToken"],
        "tokenType": "Bearer",
        "expiresIn": ACCESS_SECONDS,
        "signingKey": user_signing_key(user),
        # lastActive: see test_token_response_reports_the_new_last_active
        "user": {**profile(user), "lastActive": data["user"]["lastActive"]},
    }
    assert HEX_KEY.match(data["signingKey"])


@pytest.mark.parametrize("username", ["progamer123", "PROGAMER123", "pRoGaMeR123"])
def test_username_matches_case_insensitively(
    api_client: APIClient, user: User, username: str
) -> None:
    # when the player logs in typing the name in another case
    response = obtain(api_client, username)

    # then it is the same account
    assert response.status_code == status.HTTP_200_OK, response.content
    assert response.json()["data"]["user"]["id"] == str(user.pk)


def test_access_token_carries_the_specified_claims(api_client: APIClient, user: User) -> None:
    # given a freshly issued access token
    before = int(time.time())
    access = obtain_pair(api_client, user)["accessToken"]
    after = int(time.time())

    # when it is verified with the server's key, audience and issuer
    claims = decode_jwt(access)

    # then it holds exactly the specified claims
    assert set(claims) == ACCESS_CLAIMS
    assert {name: claims[name] for name in ("sub", "username", "email", "role", "token_type")} == {
        "sub": str(user.pk),
        "username": "ProGamer123",
        "email": "pro@example.com",
        "role": "user",
        "token_type": "access",
    }
    assert claims["permissions"] == ["score.update", "leaderboard.view"]
    assert (claims["iss"], claims["aud"]) == ("scoreboard-api", "scoreboard-client")
    assert before <= claims["iat"] <= after
    assert claims["exp"] - claims["iat"] == ACCESS_SECONDS


def test_access_token_ids_are_unique(api_client: APIClient, user: User) -> None:
    # when the player logs in twice
    first = decode_jwt(obtain_pair(api_client, user)["accessToken"])
    second = decode_jwt(obtain_pair(api_client, user)["accessToken"])

    # then each token has its own id
    assert first["jti"] != second["jti"]


def test_moderator_token_carries_moderator_permissions(
    api_client: APIClient, make_user: Any
) -> None:
    # given a moderator
    moderator = make_user(username="Mod_1", email="mod@example.com", role=Role.MODERATOR)

    # when they log in
    claims = decode_jwt(obtain_pair(api_client, moderator)["accessToken"])

    # then the role and its permissions are in the token
    assert (claims["role"], claims["permissions"]) == (
        "moderator",
        ["score.update", "leaderboard.view", "moderation.review"],
    )


def test_login_updates_last_active(api_client: APIClient, user: User) -> None:
    # given a player last seen a week ago
    week_ago = timezone.now() - timedelta(days=7)
    User.objects.filter(pk=user.pk).update(last_active_at=week_ago)

    # when they log in
    started = timezone.now()
    obtain_pair(api_client, user)

    # then they were active just now
    user.refresh_from_db()
    assert user.last_active_at >= started


def test_token_response_reports_the_new_last_active(api_client: APIClient, user: User) -> None:
    # given a player last seen a week ago
    User.objects.filter(pk=user.pk).update(last_active_at=timezone.now() - timedelta(days=7))

    # when they log in
    data = obtain_pair(api_client, user)

    # then the profile in the response is the stored one, last-active time included
    assert data["user"] == profile(user)


def test_wrong_password_is_unauthorized(api_client: APIClient, user: User) -> None:
    # when the password is wrong
    response = obtain(api_client, "ProGamer123", "not the password at all")

    # then the login is refused
    assert_unauthorized(response, BAD_CREDENTIALS)


def test_unknown_user_gets_the_same_answer_as_a_wrong_password(api_client: APIClient) -> None:
    # when nobody has that name
    response = obtain(api_client, "nobody_here")

    # then the answer does not reveal whether the account exists
    assert_unauthorized(response, BAD_CREDENTIALS)


def test_inactive_user_cannot_log_in(api_client: APIClient, user: User) -> None:
    # given a deactivated account
    User.objects.filter(pk=user.pk).update(is_active=False)

    # when it logs in with the right password
    response = obtain(api_client, "ProGamer123")

    # then it is refused like bad credentials
    assert_unauthorized(response, BAD_CREDENTIALS)


def test_login_by_email_is_not_accepted(api_client: APIClient, user: User) -> None:
    # when the email is given as the username
    response = obtain(api_client, "pro@example.com")

    # then it is not a log-in name
    assert_unauthorized(response, BAD_CREDENTIALS)


@pytest.mark.parametrize(
    ("body", "details"),
    [
        pytest.param(
            {"username": "ProGamer123"},
            {"password": ["This field is required."]},
            id="missing-password",
        ),
        pytest.param(
            {"username": 123, "password": TEST_PASSWORD},
            {"username": ["Not a valid string."]},
            id="username-int",
        ),
        pytest.param(
            {"username": "ProGamer123", "password": [TEST_PASSWORD]},
            {"password": ["Not a valid string."]},
            id="password-list",
        ),
        pytest.param(
            {"username": "ProGamer123", "password": TEST_PASSWORD, "otp": "123456"},
            {"otp": ["Unknown field."]},
            id="unknown-field",
        ),
    ],
)
def test_token_request_of_the_wrong_shape_is_invalid_input(
    api_client: APIClient, user: User, body: dict[str, Any], details: dict[str, list[str]]
) -> None:
    # when the credentials are not two strings
    response = api_client.post(TOKEN_URL, body, format="json")

    # then the request is refused as invalid input
    assert_invalid(response, details)


# --- refreshing ----------------------------------------------------------------------------


def test_refresh_returns_a_new_pair(api_client: APIClient, user: User) -> None:
    # given a pair
    first = obtain_pair(api_client, user)

    # when the refresh token is exchanged
    response = refresh(api_client, first["refreshToken"])

    # then a different pair comes back, with the same shape as at log-in
    assert response.status_code == status.HTTP_200_OK, response.content
    data = response.json()["data"]
    assert data == {
        "accessToken": data["accessToken"],
        "refreshToken": data["refreshToken"],
        "tokenType": "Bearer",
        "expiresIn": ACCESS_SECONDS,
        "signingKey": user_signing_key(user),
        # lastActive: see test_token_response_reports_the_new_last_active
        "user": {**profile(user), "lastActive": data["user"]["lastActive"]},
    }
    assert data["accessToken"] != first["accessToken"]
    assert data["refreshToken"] != first["refreshToken"]


def test_refreshed_access_token_carries_fresh_claims(api_client: APIClient, user: User) -> None:
    # given a pair issued to a player who is then promoted to moderator
    first = obtain_pair(api_client, user)
    User.objects.filter(pk=user.pk).update(role=Role.MODERATOR, email="mod@example.com")

    # when the refresh token is exchanged
    data = refresh(api_client, first["refreshToken"]).json()["data"]

    # then the new access token states the current role, permissions and email
    claims = decode_jwt(data["accessToken"])
    assert set(claims) == ACCESS_CLAIMS
    assert {name: claims[name] for name in ("sub", "email", "role", "permissions")} == {
        "sub": str(user.pk),
        "email": "mod@example.com",
        "role": "moderator",
        "permissions": ["score.update", "leaderboard.view", "moderation.review"],
    }
    assert claims["exp"] - claims["iat"] == ACCESS_SECONDS


def test_refresh_token_works_only_once(api_client: APIClient, user: User) -> None:
    # given a refresh token that was already exchanged
    token = obtain_pair(api_client, user)["refreshToken"]
    assert refresh(api_client, token).status_code == status.HTTP_200_OK

    # when it is presented again (a replay)
    response = refresh(api_client, token)

    # then it is refused
    assert_unauthorized(response, REVOKED)


def test_the_rotated_refresh_token_still_works(api_client: APIClient, user: User) -> None:
    # given the refresh token returned by a refresh
    token = obtain_pair(api_client, user)["refreshToken"]
    rotated = refresh(api_client, token).json()["data"]["refreshToken"]

    # when it is exchanged in turn
    response = refresh(api_client, rotated)

    # then it works
    assert response.status_code == status.HTTP_200_OK, response.content


def test_access_token_is_not_a_refresh_token(api_client: APIClient, user: User) -> None:
    # when an access token is presented for refresh
    access = obtain_pair(api_client, user)["accessToken"]
    response = refresh(api_client, access)

    # then it is refused
    assert_unauthorized(response, REVOKED)


def test_expired_refresh_token_is_token_expired(api_client: APIClient, user: User) -> None:
    # given a genuine refresh token whose expiry has passed
    claims = decode_jwt(obtain_pair(api_client, user)["refreshToken"])
    expired = signed_jwt(claims, exp=int(time.time()) - 1)

    # when it is exchanged
    response = refresh(api_client, expired)

    # then the caller learns it expired (and should log in again)
    assert_unauthorized(response, "The refresh token has expired.", code="TOKEN_EXPIRED")


def test_refresh_for_a_deactivated_user_is_unauthorized(api_client: APIClient, user: User) -> None:
    # given a pair issued before the account was deactivated
    token = obtain_pair(api_client, user)["refreshToken"]
    User.objects.filter(pk=user.pk).update(is_active=False)

    # when the refresh token is exchanged
    response = refresh(api_client, token)

    # then it is refused
    assert_unauthorized(response, INVALID_TOKEN)


def test_refresh_for_a_deleted_user_is_unauthorized(api_client: APIClient, user: User) -> None:
    # given a pair issued to an account that was then deleted
    token = obtain_pair(api_client, user)["refreshToken"]
    User.objects.filter(pk=user.pk).delete()

    # when the refresh token is exchanged
    response = refresh(api_client, token)

    # then it is refused, not a server error
    assert_unauthorized(response, INVALID_TOKEN)


def test_refresh_after_a_password_change_is_unauthorized(api_client: APIClient, user: User) -> None:
    # given a pair issued before the password changed
    token = obtain_pair(api_client, user)["refreshToken"]
    user.set_password("a different long passphrase")
    user.save(update_fields=["password"])

    # when the old refresh token is exchanged
    response = refresh(api_client, token)

    # then it is refused
    assert_unauthorized(response, INVALID_TOKEN)


@pytest.mark.parametrize(
    "token",
    [
        "garbage",
        "a.b.c",
        "eyJhbGciOiJIUzI1NiJ9.e30.",
        "x" * 4096,
    ],
    ids=["word", "three-parts", "empty-signature", "max-length"],
)
def test_garbage_refresh_token_is_unauthorized(api_client: APIClient, token: str) -> None:
    # when something that is not a refresh token is presented
    response = refresh(api_client, token)

    # then it is refused
    assert_unauthorized(response, REVOKED)


def test_refresh_token_forged_with_another_key_is_unauthorized(
    api_client: APIClient, user: User
) -> None:
    # given a refresh token's claims re-signed with a key that is not the server's
    claims = decode_jwt(obtain_pair(api_client, user)["refreshToken"])
    forged = signed_jwt(claims, key="k" * 64)

    # when it is exchanged
    response = refresh(api_client, forged)

    # then it is refused
    assert_unauthorized(response, REVOKED)


def test_refresh_token_with_a_malformed_subject_is_unauthorized(
    api_client: APIClient, user: User
) -> None:
    # given a correctly signed refresh token whose subject is not a UUID
    claims = decode_jwt(obtain_pair(api_client, user)["refreshToken"])
    token = signed_jwt(claims, sub="not-a-uuid")

    # when it is exchanged
    response = refresh(api_client, token)

    # then it is refused rather than crashing the lookup (a 500)
    assert response.status_code == status.HTTP_401_UNAUTHORIZED, response.content
    assert response.json()["error"]["code"] == "UNAUTHORIZED"


def test_refresh_token_for_an_unknown_subject_is_unauthorized(
    api_client: APIClient, user: User
) -> None:
    # given a correctly signed refresh token naming a user who never existed
    claims = decode_jwt(obtain_pair(api_client, user)["refreshToken"])
    token = signed_jwt(claims, sub=str(uuid.uuid4()))

    # when it is exchanged
    response = refresh(api_client, token)

    # then it is refused
    assert_unauthorized(response, INVALID_TOKEN)


@pytest.mark.parametrize(
    ("body", "details"),
    [
        pytest.param({"refreshToken": 123}, {"refreshToken": ["Not a valid string."]}, id="int"),
        pytest.param(
            {"refreshToken": ["a.b.c"]}, {"refreshToken": ["Not a valid string."]}, id="list"
        ),
        pytest.param({"refreshToken": True}, {"refreshToken": ["Not a valid string."]}, id="bool"),
        pytest.param(
            {"refreshToken": None},
            {"refreshToken": ["This field may not be null."]},
            id="null",
        ),
        pytest.param({}, {"refreshToken": ["This field is required."]}, id="missing"),
        pytest.param(
            {"refreshToken": ""}, {"refreshToken": ["This field may not be blank."]}, id="blank"
        ),
        pytest.param(
            {"refresh": "a.b.c"}, {"refresh": ["Unknown field."]}, id="simplejwt-field-name"
        ),
        pytest.param(
            {"refreshToken": "x" * 4097},
            {"refreshToken": ["Ensure this field has no more than 4096 characters."]},
            id="too-long",
        ),
    ],
)
def test_refresh_request_of_the_wrong_shape_is_invalid_input(
    api_client: APIClient, body: dict[str, Any], details: dict[str, list[str]]
) -> None:
    # when the refresh token is not a string
    response = api_client.post(REFRESH_URL, body, format="json")

    # then the request is refused as invalid input
    assert_invalid(response, details)


# --- rate limiting -------------------------------------------------------------------------

AUTH_LIMIT = 3  # per client address per minute, lowered from the default 20 by `auth_rate`
TOO_MANY_ATTEMPTS = "Too many authentication attempts. Please wait before trying again."


@pytest.fixture
def auth_rate(settings: Any) -> None:
    settings.SCOREBOARD_AUTH_RATE = Rate(AUTH_LIMIT, 60)


def use_up_log_in_attempts(client: APIClient) -> list[str]:
    """Fail to log in as often as the auth rate allows; the error codes of those attempts."""
    return [
        obtain(client, "ProGamer123", "wrong password").json()["error"]["code"]
        for _ in range(AUTH_LIMIT)
    ]


@pytest.mark.usefixtures("auth_rate")
def test_token_endpoint_is_rate_limited_per_client(api_client: APIClient, user: User) -> None:
    # given as many failed log-ins from one address as the auth rate allows
    # (their 401 status is asserted by test_wrong_password_is_unauthorized)
    codes = use_up_log_in_attempts(api_client)
    assert codes == ["UNAUTHORIZED"] * AUTH_LIMIT

    # when one more arrives
    response = obtain(api_client, "ProGamer123", "wrong password")

    # then it is limited, saying when to retry in the body and the headers
    retry_after = response.json()["error"]["retryAfter"]
    assert isinstance(retry_after, int)
    assert 1 <= retry_after <= 60
    assert_error(
        response,
        status_code=status.HTTP_429_TOO_MANY_REQUESTS,
        code="RATE_LIMIT_EXCEEDED",
        message=TOO_MANY_ATTEMPTS,
        retry_after=retry_after,
    )
    assert response["Retry-After"] == str(retry_after)
    assert (
        response["X-RateLimit-Limit"],
        response["X-RateLimit-Remaining"],
        response["X-RateLimit-Reset"],
    ) == (str(AUTH_LIMIT), "0", str(retry_after))


@pytest.mark.usefixtures("auth_rate")
def test_log_in_reports_the_attempts_left(api_client: APIClient, user: User) -> None:
    # when the player logs in once
    response = obtain(api_client, "ProGamer123")

    # then the headers count down the auth limit, the tightest one on this endpoint
    assert response.status_code == status.HTTP_200_OK, response.content
    assert response["X-RateLimit-Limit"] == str(AUTH_LIMIT)
    assert response["X-RateLimit-Remaining"] == str(AUTH_LIMIT - 1)
    assert 1 <= int(response["X-RateLimit-Reset"]) <= 60


@pytest.mark.usefixtures("auth_rate")
def test_register_token_and_refresh_share_one_budget(api_client: APIClient, user: User) -> None:
    # given a log-in, a refresh and a registration from one address
    refresh_token = obtain_pair(api_client, user)["refreshToken"]
    assert refresh(api_client, refresh_token).status_code == status.HTTP_200_OK
    registration = {"username": "Other_1", "email": "o@example.com", "password": TEST_PASSWORD}
    assert api_client.post(REGISTER_URL, registration, format="json").status_code == 201

    # when it tries any of the three again
    response = refresh(api_client, "a.b.c")

    # then the shared auth budget is spent
    assert response.status_code == status.HTTP_429_TOO_MANY_REQUESTS
    assert response.json()["error"]["message"] == TOO_MANY_ATTEMPTS


@pytest.mark.usefixtures("auth_rate")
def test_limited_client_is_refused_even_with_the_right_password(
    api_client: APIClient, user: User
) -> None:
    # given a client that used up its log-in attempts
    use_up_log_in_attempts(api_client)

    # when it finally guesses right
    response = obtain(api_client, "ProGamer123")

    # then it is still limited (no token is issued)
    assert response.status_code == status.HTTP_429_TOO_MANY_REQUESTS
    assert response.json()["error"]["code"] == "RATE_LIMIT_EXCEEDED"
    assert "accessToken" not in response.content.decode()


@pytest.mark.usefixtures("auth_rate")
def test_spoofed_forwarded_for_does_not_escape_the_limit(api_client: APIClient, user: User) -> None:
    # given a client that used up its log-in attempts
    use_up_log_in_attempts(api_client)

    # when it claims to be someone else through X-Forwarded-For (it is no trusted proxy)
    response = api_client.post(
        TOKEN_URL,
        {"username": "ProGamer123", "password": "wrong password"},
        format="json",
        HTTP_X_FORWARDED_FOR="203.0.113.7",
    )

    # then it is still limited
    assert response.status_code == status.HTTP_429_TOO_MANY_REQUESTS


@pytest.mark.usefixtures("auth_rate")
def test_another_address_has_its_own_budget(api_client: APIClient, user: User) -> None:
    # given a client that used up its log-in attempts
    use_up_log_in_attempts(api_client)

    # when the player logs in from another address
    response = api_client.post(
        TOKEN_URL,
        {"username": "ProGamer123", "password": TEST_PASSWORD},
        format="json",
        REMOTE_ADDR="198.51.100.20",
    )

    # then that address is not limited
    assert response.status_code == status.HTTP_200_OK, response.content
