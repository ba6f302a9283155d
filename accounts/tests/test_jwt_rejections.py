"""Every way an access token can be missing, malformed, forged, stale or revoked, on
GET /api/v1/users/me. Each is a 401 with the exact envelope, never a 500."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import jwt
import pytest
from rest_framework import status
from rest_framework.test import APIClient
from rest_framework_simplejwt.exceptions import ExpiredTokenError

from accounts.authentication import VerifiedTokens
from accounts.models import User
from accounts.selectors import tokens_refused
from accounts.services import token_pair_for_credentials
from accounts.tests.helpers import DROP, ME_URL, assert_error, decode_jwt, signed_jwt
from conftest import TEST_PASSWORD

pytestmark = pytest.mark.django_db

WWW_AUTHENTICATE = 'Bearer realm="api"'
NOT_PROVIDED = "Authentication credentials were not provided."
INVALID_TOKEN = "Invalid authentication token."  # the token itself does not verify
REJECTED = "Invalid or expired authentication token."  # malformed header or unusable user
OTHER_KEY = "an-attacker-key-that-is-not-the-server-key-0123456789abcdef"


def pair_for(user: User) -> Any:
    return token_pair_for_credentials(username=user.username, password=TEST_PASSWORD)


def access_claims(user: User) -> dict[str, Any]:
    return decode_jwt(pair_for(user).access)


def get_me(client: APIClient, authorization: str | None) -> Any:
    if authorization is None:
        return client.get(ME_URL)
    return client.get(ME_URL, HTTP_AUTHORIZATION=authorization)


def assert_rejected(response: Any, message: str, code: str = "UNAUTHORIZED") -> None:
    assert_error(response, status_code=status.HTTP_401_UNAUTHORIZED, code=code, message=message)
    assert response["WWW-Authenticate"] == WWW_AUTHENTICATE


# --- the Authorization header --------------------------------------------------------------


@pytest.mark.parametrize(
    ("authorization", "message"),
    [
        pytest.param(None, NOT_PROVIDED, id="no-header"),
        pytest.param("Basic cHJvOnB3", NOT_PROVIDED, id="basic-scheme"),
        pytest.param("Token abc", NOT_PROVIDED, id="other-scheme"),
        pytest.param("Bearer", REJECTED, id="bearer-alone"),
        pytest.param("Bearer ", REJECTED, id="bearer-space"),
        pytest.param("Bearer a b", REJECTED, id="bearer-two-values"),
        pytest.param("Bearer garbage", INVALID_TOKEN, id="garbage"),
        pytest.param("Bearer a.b.c", INVALID_TOKEN, id="three-garbage-parts"),
        pytest.param("Bearer eyJhbGciOiJIUzI1NiJ9.e30.", INVALID_TOKEN, id="empty-signature"),
        pytest.param("Bearer ab\x00cd", INVALID_TOKEN, id="nul-byte"),
    ],
)
def test_missing_or_malformed_credentials_are_unauthorized(
    api_client: APIClient, user: User, authorization: str | None, message: str
) -> None:
    # when the request carries no usable bearer token
    response = get_me(api_client, authorization)

    # then it is 401 with a challenge
    assert_rejected(response, message)


# --- forged and tampered tokens ------------------------------------------------------------

# Each builds a token from a genuine access token's claims.
TOKEN_FORGERIES: list[Any] = [
    pytest.param(lambda c: signed_jwt(c, key=OTHER_KEY), INVALID_TOKEN, id="other-key"),
    pytest.param(
        lambda c: signed_jwt(c, key=OTHER_KEY, exp=int(time.time()) - 60),
        INVALID_TOKEN,
        id="other-key-and-expired",
    ),
    pytest.param(lambda c: jwt.encode(c, "", algorithm="none"), INVALID_TOKEN, id="alg-none"),
    pytest.param(
        lambda c: jwt.encode(c, "", algorithm="none") + "forged-signature",
        INVALID_TOKEN,
        id="alg-none-with-signature",
    ),
    pytest.param(lambda c: signed_jwt(c, algorithm="HS512"), INVALID_TOKEN, id="hs512-right-key"),
    pytest.param(lambda c: signed_jwt(c, algorithm="HS384"), INVALID_TOKEN, id="hs384-right-key"),
    pytest.param(lambda c: signed_jwt(c, aud="another-client"), INVALID_TOKEN, id="wrong-aud"),
    pytest.param(
        lambda c: signed_jwt(c, aud=["another-client"]), INVALID_TOKEN, id="wrong-aud-list"
    ),
    pytest.param(lambda c: signed_jwt(c, aud=DROP), INVALID_TOKEN, id="missing-aud"),
    pytest.param(lambda c: signed_jwt(c, iss="another-issuer"), INVALID_TOKEN, id="wrong-iss"),
    pytest.param(lambda c: signed_jwt(c, iss=DROP), INVALID_TOKEN, id="missing-iss"),
    pytest.param(
        lambda c: signed_jwt(c, token_type="refresh"), INVALID_TOKEN, id="token-type-refresh"
    ),
    pytest.param(lambda c: signed_jwt(c, token_type=DROP), INVALID_TOKEN, id="no-token-type"),
    pytest.param(lambda c: signed_jwt(c, sub=DROP), REJECTED, id="missing-sub"),
    pytest.param(lambda c: signed_jwt(c, sub=str(uuid.uuid4())), REJECTED, id="unknown-sub"),
    pytest.param(lambda c: signed_jwt(c, sub=12345), INVALID_TOKEN, id="integer-sub"),
    pytest.param(lambda c: signed_jwt(c, hash_password=DROP), REJECTED, id="no-password-hash"),
    pytest.param(
        lambda c: signed_jwt(c, hash_password="0" * 32), REJECTED, id="wrong-password-hash"
    ),
]


@pytest.mark.parametrize(("build", "message"), TOKEN_FORGERIES)
def test_tampered_token_is_unauthorized(
    api_client: APIClient,
    user: User,
    build: Callable[[dict[str, Any]], str],
    message: str,
) -> None:
    # given a token made from a genuine one's claims but altered
    token = build(access_claims(user))

    # when it is presented
    response = get_me(api_client, f"Bearer {token}")

    # then it is refused
    assert_rejected(response, message)


def test_far_future_expiry_with_the_real_key_is_accepted(api_client: APIClient, user: User) -> None:
    # given a token re-signed with the real key and only its expiry moved
    # (a control for the tampering cases: re-signing alone does not make a token invalid)
    token = signed_jwt(access_claims(user), exp=int(time.time()) + 3600)

    # when it is presented
    response = get_me(api_client, f"Bearer {token}")

    # then it is accepted
    assert response.status_code == status.HTTP_200_OK, response.content


def test_expired_token_is_token_expired(api_client: APIClient, user: User) -> None:
    # given a genuinely signed token whose expiry has passed
    token = signed_jwt(access_claims(user), exp=int(time.time()) - 1)

    # when it is presented
    response = get_me(api_client, f"Bearer {token}")

    # then the caller learns it expired
    assert_rejected(response, "The token has expired.", code="TOKEN_EXPIRED")


def test_refresh_token_is_not_an_access_token(api_client: APIClient, user: User) -> None:
    # when a refresh token is presented as the bearer token
    response = get_me(api_client, f"Bearer {pair_for(user).refresh}")

    # then it is refused
    assert_rejected(response, INVALID_TOKEN)


def test_token_with_a_malformed_subject_is_unauthorized(api_client: APIClient, user: User) -> None:
    # given a correctly signed token whose subject is not a UUID
    token = signed_jwt(access_claims(user), sub="not-a-uuid")

    # when it is presented
    response = get_me(api_client, f"Bearer {token}")

    # then it is refused rather than crashing the user lookup (a 500)
    assert response.status_code == status.HTTP_401_UNAUTHORIZED, response.content
    error = response.json()["error"]
    assert (error["code"], error["requestId"]) == ("UNAUTHORIZED", response["X-Request-ID"])


# --- the user behind a valid token ---------------------------------------------------------


def test_user_deactivated_after_issue_is_unauthorized(api_client: APIClient, user: User) -> None:
    # given a token issued before the account was deactivated
    access = pair_for(user).access
    User.objects.filter(pk=user.pk).update(is_active=False)

    # when it is presented
    response = get_me(api_client, f"Bearer {access}")

    # then it is refused
    assert_rejected(response, REJECTED)


def test_deleted_user_is_unauthorized(api_client: APIClient, user: User) -> None:
    # given a token whose user was deleted
    access = pair_for(user).access
    User.objects.filter(pk=user.pk).delete()

    # when it is presented
    response = get_me(api_client, f"Bearer {access}")

    # then it is refused
    assert_rejected(response, REJECTED)


def test_password_changed_after_issue_is_unauthorized(api_client: APIClient, user: User) -> None:
    # given a token issued before the password changed
    access = pair_for(user).access
    user.set_password("a different long passphrase")
    user.save(update_fields=["password"])

    # when it is presented
    response = get_me(api_client, f"Bearer {access}")

    # then it is refused
    assert_rejected(response, REJECTED)


def test_genuine_token_is_accepted(api_client: APIClient, user: User) -> None:
    # a control: the untouched token passes, so the rejections above are due to the change
    response = get_me(api_client, f"Bearer {pair_for(user).access}")

    assert response.status_code == status.HTTP_200_OK, response.content


def test_error_echoes_a_sane_incoming_request_id(api_client: APIClient) -> None:
    # when the client names its request
    response = api_client.get(ME_URL, HTTP_X_REQUEST_ID="client-req-42")

    # then the error carries that id, in the body and the header
    assert response["X-Request-ID"] == "client-req-42"
    assert_rejected(response, NOT_PROVIDED)


def test_error_replaces_an_unsafe_incoming_request_id(api_client: APIClient) -> None:
    # when the incoming id could smuggle something into logs
    response = api_client.get(ME_URL, HTTP_X_REQUEST_ID="bad id\twith spaces")

    # then a fresh id is used, the same in the body and the header
    assert response["X-Request-ID"] != "bad id\twith spaces"
    assert_rejected(response, NOT_PROVIDED)


def test_a_token_already_accepted_is_refused_once_its_user_is_banned_or_repassworded(
    api_client: APIClient, user: User
) -> None:
    # given a token this process has verified (and keeps verified)
    access = pair_for(user).access
    assert get_me(api_client, f"Bearer {access}").status_code == status.HTTP_200_OK

    # when the user is banned, then the same token is refused at once
    User.objects.filter(pk=user.pk).update(is_active=False)
    assert_rejected(get_me(api_client, f"Bearer {access}"), REJECTED)

    # and after reinstatement and a password change too
    User.objects.filter(pk=user.pk).update(is_active=True)
    user.set_password("a different long passphrase")
    user.save(update_fields=["password"])
    assert_rejected(get_me(api_client, f"Bearer {access}"), REJECTED)


def test_a_kept_verification_ends_with_the_token_and_the_oldest_make_room(
    user: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    kept = VerifiedTokens(size=2)
    first, second, third = (pair_for(user).access.encode() for _ in range(3))

    verified_first = kept.get(first)
    assert kept.get(first) is verified_first  # verified once, then kept
    verified_second = kept.get(second)
    kept.get(third)  # evicts `first`, the least recently used
    assert kept.get(second) is verified_second
    assert kept.get(first) is not verified_first

    # past its expiry a kept token is not served: it is verified afresh (and refused)
    lifetime = decode_jwt(second.decode())["exp"] - time.time()
    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() + lifetime + 1)
    assert kept.get(second) is not verified_second
    expired = signed_jwt({**decode_jwt(pair_for(user).access), "exp": int(real_time()) - 1})
    with pytest.raises(ExpiredTokenError):
        kept.get(expired.encode())


def test_many_tokens_are_checked_with_one_query(
    user: User, make_user: Callable[..., User], django_assert_num_queries: Any
) -> None:
    banned, repassworded, deleted = (make_user() for _ in range(3))
    claims = [access_claims(someone) for someone in (user, banned, repassworded, deleted)]
    User.objects.filter(pk=banned.pk).update(is_active=False)
    repassworded.set_password("a different long passphrase")
    repassworded.save(update_fields=["password"])
    deleted.delete()
    malformed = {**claims[0], "sub": "not-a-uuid"}

    with django_assert_num_queries(1):
        refused = tokens_refused([*claims, malformed, claims[0]])

    assert refused == [False, True, True, True, True, False]
