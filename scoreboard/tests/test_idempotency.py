"""`Idempotency-Key` on authenticated POSTs: replay, conflicts, rollback, expiry, concurrency."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connections
from django.utils import timezone
from rest_framework import status
from rest_framework.test import APIClient

from accounts import services
from accounts.models import User
from accounts.selectors import user_signing_key
from accounts.tests.helpers import ROTATE_URL, assert_error, assert_invalid
from conftest import TEST_PASSWORD
from scoreboard.encryption import decrypt_text
from scoreboard.errors import Forbidden
from scoreboard.idempotency import IDEMPOTENCY_KEY_HEADER
from scoreboard.models import IdempotencyRecord
from scoreboard.tests.idempotency_urls import ANONYMOUS_URL, BUMP_URL, BumpView

pytestmark = pytest.mark.django_db

REUSED_MESSAGE = "This Idempotency-Key was already used with a different request."
INVALID_KEY = {IDEMPOTENCY_KEY_HEADER: ["Must be 1 to 255 printable ASCII characters."]}


def keyed(key: str) -> dict[str, Any]:
    return {"HTTP_IDEMPOTENCY_KEY": key}


def version(user: User) -> int:
    return User.objects.values_list("signing_key_version", flat=True).get(pk=user.pk)


def current_key(user: User) -> str:
    user.refresh_from_db(fields=["signing_key_version"])
    return user_signing_key(user)


def records() -> list[dict[str, Any]]:
    rows = IdempotencyRecord.objects.order_by("pk").values("user_id", "key", "status_code")
    return [dict(row) for row in rows]


def access_token(user: User) -> str:
    return services.token_pair_for_credentials(
        username=user.username, password=TEST_PASSWORD
    ).access


def client_for(user: User) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {access_token(user)}")
    return client


def expire_all_records() -> None:
    ttl = timedelta(seconds=settings.SCOREBOARD_IDEMPOTENCY_TTL_SECONDS + 1)
    IdempotencyRecord.objects.update(created_at=timezone.now() - ttl)


# --- replay -----------------------------------------------------------------------------------


def test_a_retry_replays_the_first_response_without_writing_again(
    auth_client: APIClient, user: User
) -> None:
    # given a rotation sent with a key
    first = auth_client.post(ROTATE_URL, **keyed("rotate-1"))

    # when the client retries it with the same key
    retry = auth_client.post(ROTATE_URL, **keyed("rotate-1"))

    # then the retry gets the first answer, marked as replayed, and the key rotated only once
    assert first.status_code == status.HTTP_200_OK, first.content
    assert "Idempotent-Replayed" not in first
    assert retry.status_code == status.HTTP_200_OK
    assert retry["Idempotent-Replayed"] == "true"
    assert retry.json() == first.json()
    assert version(user) == 2
    assert first.json()["data"]["signingKey"] == current_key(user)
    assert records() == [{"user_id": user.pk, "key": "rotate-1", "status_code": 200}]


def test_the_stored_response_is_encrypted(auth_client: APIClient) -> None:
    # when a response carrying a secret is stored for replay
    response = auth_client.post(ROTATE_URL, **keyed("rotate-1"))

    # then the row holds no plaintext, yet decrypts to exactly what the client received
    stored = IdempotencyRecord.objects.get().encrypted_body
    assert response.json()["data"]["signingKey"] not in stored
    assert "signingKey" not in stored
    assert json.loads(decrypt_text(stored)) == response.json()


@pytest.mark.urls("scoreboard.tests.idempotency_urls")
def test_a_replay_keeps_the_first_status(auth_client: APIClient, user: User) -> None:
    # given a keyed write answered 201
    first = auth_client.post(BUMP_URL, **keyed("bump-1"))

    # when it is retried
    retry = auth_client.post(BUMP_URL, **keyed("bump-1"))

    # then the replay is a 201 too, and the write ran once
    assert first.status_code == status.HTTP_201_CREATED, first.content
    assert retry.status_code == status.HTTP_201_CREATED
    assert retry["Idempotent-Replayed"] == "true"
    assert retry.json() == first.json()
    assert version(user) == 2


# --- the same key for another request -----------------------------------------------------------


def test_the_same_key_with_another_body_is_refused(auth_client: APIClient, user: User) -> None:
    # given a rotation sent with a key
    first = auth_client.post(ROTATE_URL, **keyed("rotate-1"))

    # when the key comes back with a different body
    response = auth_client.post(ROTATE_URL, {"again": True}, format="json", **keyed("rotate-1"))

    # then it is a 422 and nothing changes
    assert_error(response, status_code=422, code="IDEMPOTENCY_KEY_REUSED", message=REUSED_MESSAGE)
    assert version(user) == 2
    assert current_key(user) == first.json()["data"]["signingKey"]
    assert records() == [{"user_id": user.pk, "key": "rotate-1", "status_code": 200}]


@pytest.mark.urls("scoreboard.tests.idempotency_urls")
def test_the_same_key_on_another_endpoint_is_refused(auth_client: APIClient, user: User) -> None:
    # given a rotation sent with a key
    auth_client.post(ROTATE_URL, **keyed("shared"))

    # when the same key is sent to another endpoint with the same (empty) body
    response = auth_client.post(BUMP_URL, **keyed("shared"))

    # then it is a 422 and the other endpoint did not run
    assert_error(response, status_code=422, code="IDEMPOTENCY_KEY_REUSED", message=REUSED_MESSAGE)
    assert version(user) == 2


def test_keys_of_different_users_are_independent(
    auth_client: APIClient, user: User, make_user: Callable[..., User]
) -> None:
    # given another player
    other = make_user()

    # when both rotate with the same key
    mine = auth_client.post(ROTATE_URL, **keyed("same-key"))
    theirs = client_for(other).post(ROTATE_URL, **keyed("same-key"))

    # then each request ran for its own user, neither is a replay
    assert mine.status_code == theirs.status_code == status.HTTP_200_OK
    assert "Idempotent-Replayed" not in theirs
    assert theirs.json()["data"]["signingKey"] == current_key(other)
    assert version(user) == version(other) == 2
    assert records() == [
        {"user_id": user.pk, "key": "same-key", "status_code": 200},
        {"user_id": other.pk, "key": "same-key", "status_code": 200},
    ]


# --- without a key, and invalid keys ----------------------------------------------------------


def test_without_a_key_every_request_runs(auth_client: APIClient, user: User) -> None:
    # when the same rotation is sent twice without a key
    first = auth_client.post(ROTATE_URL)
    second = auth_client.post(ROTATE_URL)

    # then both ran, nothing is replayed and nothing is stored
    assert first.status_code == second.status_code == status.HTTP_200_OK
    assert "Idempotent-Replayed" not in second
    assert first.json() != second.json()
    assert version(user) == 3
    assert records() == []


@pytest.mark.urls("scoreboard.tests.idempotency_urls")
@pytest.mark.django_db(transaction=True)
def test_only_keyed_requests_run_in_a_transaction(auth_client: APIClient) -> None:
    # when the same write is sent without and with a key
    plain = auth_client.post(BUMP_URL)
    keyed_response = auth_client.post(BUMP_URL, **keyed("bump-1"))

    # then the handler ran unchanged without one, and inside a transaction with one
    assert plain.json() == {"inAtomicBlock": False}
    assert keyed_response.json() == {"inAtomicBlock": True}


@pytest.mark.parametrize(
    "key",
    ["", "x" * 256, "clé", "tab\there", "line\nbreak", "\x7f"],
    ids=["empty", "too-long", "non-ascii", "tab", "newline", "delete"],
)
def test_an_invalid_key_is_refused(auth_client: APIClient, user: User, key: str) -> None:
    # when a rotation carries a malformed key
    response = auth_client.post(ROTATE_URL, **keyed(key))

    # then it is refused before anything runs
    assert_invalid(response, INVALID_KEY)
    assert version(user) == 1
    assert records() == []


@pytest.mark.parametrize("key", ["k", "x" * 255, " ~!\"#$%&'()*+,-./09:;<=>?@AZ[\\]^_`az{|}"])
def test_keys_of_printable_ascii_up_to_255_characters_are_accepted(
    auth_client: APIClient, user: User, key: str
) -> None:
    # when a rotation carries a key at the limits of the allowed alphabet and length
    response = auth_client.post(ROTATE_URL, **keyed(key))

    # then it is taken
    assert response.status_code == status.HTTP_200_OK, response.content
    assert records() == [{"user_id": user.pk, "key": key, "status_code": 200}]


@pytest.mark.urls("scoreboard.tests.idempotency_urls")
def test_a_key_on_a_view_open_to_anonymous_callers_is_a_server_error(
    api_client: APIClient,
) -> None:
    # when a view that does not require a login is decorated by mistake and gets a key
    response = api_client.post(ANONYMOUS_URL, **keyed("anon"))

    # then the request fails rather than sharing replays between anonymous callers
    assert_error(
        response,
        status_code=500,
        code="INTERNAL_ERROR",
        message="An unexpected error occurred.",
    )
    assert records() == []


# --- expiry -----------------------------------------------------------------------------------


def test_an_expired_key_runs_the_request_again(auth_client: APIClient, user: User) -> None:
    # given a keyed rotation older than the retention period
    first = auth_client.post(ROTATE_URL, **keyed("rotate-1"))
    expire_all_records()

    # when the key is sent again
    again = auth_client.post(ROTATE_URL, **keyed("rotate-1"))

    # then the request ran afresh and its answer replaced the stale one
    assert again.status_code == status.HTTP_200_OK, again.content
    assert "Idempotent-Replayed" not in again
    assert again.json()["data"]["signingKey"] != first.json()["data"]["signingKey"]
    assert version(user) == 3
    record = IdempotencyRecord.objects.get()
    assert json.loads(decrypt_text(record.encrypted_body)) == again.json()
    assert record.created_at > timezone.now() - timedelta(minutes=1)


def test_an_expired_key_may_carry_another_body(auth_client: APIClient, user: User) -> None:
    # given a keyed rotation older than the retention period
    auth_client.post(ROTATE_URL, **keyed("rotate-1"))
    expire_all_records()

    # when the key comes back with another body
    response = auth_client.post(ROTATE_URL, {"x": 1}, format="json", **keyed("rotate-1"))

    # then it is a new request, not a conflict
    assert response.status_code == status.HTTP_200_OK, response.content
    assert version(user) == 3


# --- failed first attempts --------------------------------------------------------------------


def test_a_raising_handler_stores_nothing_and_the_retry_runs(
    auth_client: APIClient, user: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a rotation that writes and then fails
    real_rotate = services.user_rotate_signing_key

    def rotate_then_fail(*, user: User) -> str:
        real_rotate(user=user)
        raise Forbidden()

    monkeypatch.setattr(services, "user_rotate_signing_key", rotate_then_fail)
    failed = auth_client.post(ROTATE_URL, **keyed("rotate-1"))

    # when the failure is gone and the client retries with the same key
    monkeypatch.undo()
    retry = auth_client.post(ROTATE_URL, **keyed("rotate-1"))

    # then the failed attempt left nothing behind and the retry ran for real
    assert_error(
        failed,
        status_code=403,
        code="FORBIDDEN",
        message="You do not have permission to do this.",
    )
    assert retry.status_code == status.HTTP_200_OK, retry.content
    assert "Idempotent-Replayed" not in retry
    assert version(user) == 2
    assert records() == [{"user_id": user.pk, "key": "rotate-1", "status_code": 200}]


@pytest.mark.urls("scoreboard.tests.idempotency_urls")
def test_a_returned_error_rolls_back_and_the_retry_runs(
    auth_client: APIClient, user: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a keyed write that answers 409 without raising
    monkeypatch.setattr(BumpView, "answer_status", status.HTTP_409_CONFLICT)
    failed = auth_client.post(BUMP_URL, **keyed("bump-1"))
    assert failed.status_code == status.HTTP_409_CONFLICT
    assert version(user) == 1
    assert records() == []

    # when it answers 201 on the retry
    monkeypatch.undo()
    retry = auth_client.post(BUMP_URL, **keyed("bump-1"))

    # then the retry ran and is what gets stored
    assert retry.status_code == status.HTTP_201_CREATED
    assert "Idempotent-Replayed" not in retry
    assert version(user) == 2
    assert records() == [{"user_id": user.pk, "key": "bump-1", "status_code": 201}]


# --- concurrency ------------------------------------------------------------------------------


def post_concurrently(token: str, count: int, url: str, key: str) -> list[Any]:
    """`count` clients post at once, each on its own thread and database connection."""
    barrier = threading.Barrier(count)

    def post(_: int) -> Any:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
        barrier.wait()
        try:
            return client.post(url, **keyed(key))
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(post, range(count)))


@pytest.mark.django_db(transaction=True)
def test_concurrent_duplicates_write_once(user: User, monkeypatch: pytest.MonkeyPatch) -> None:
    # given a rotation slow enough for duplicates to arrive while it runs
    real_rotate = services.user_rotate_signing_key

    def slow_rotate(*, user: User) -> str:
        key = real_rotate(user=user)
        time.sleep(0.3)
        return key

    monkeypatch.setattr(services, "user_rotate_signing_key", slow_rotate)

    # when eight copies of the same keyed request arrive together
    responses = post_concurrently(access_token(user), 8, ROTATE_URL, "rotate-1")

    # then exactly one ran, and every other one is its replay
    assert [r.status_code for r in responses] == [status.HTTP_200_OK] * 8, [
        r.content for r in responses
    ]
    originals = [r for r in responses if "Idempotent-Replayed" not in r]
    assert len(originals) == 1
    assert all(r["Idempotent-Replayed"] == "true" for r in responses if r is not originals[0])
    assert all(r.json() == originals[0].json() for r in responses)
    assert version(user) == 2
    assert originals[0].json()["data"]["signingKey"] == current_key(user)
    assert records() == [{"user_id": user.pk, "key": "rotate-1", "status_code": 200}]


# --- pruning ----------------------------------------------------------------------------------


def test_prune_deletes_only_expired_records_in_batches(make_user: Callable[..., User]) -> None:
    # given three expired records and a fresh one
    user = make_user()
    for number in range(3):
        IdempotencyRecord.objects.create(user=user, key=f"old-{number}", fingerprint="0" * 64)
    expire_all_records()
    IdempotencyRecord.objects.create(user=user, key="fresh", fingerprint="0" * 64)
    output = StringIO()

    # when the prune command runs with batches smaller than the backlog
    call_command("prune_idempotency_keys", "--batch-size", "2", stdout=output)

    # then the expired ones are gone and the fresh one stays
    assert output.getvalue().strip() == "deleted 3 expired idempotency records"
    assert list(IdempotencyRecord.objects.values_list("key", flat=True)) == ["fresh"]


def test_prune_refuses_an_empty_batch() -> None:
    with pytest.raises(CommandError, match="--batch-size must be at least 1"):
        call_command("prune_idempotency_keys", "--batch-size", "0", stdout=StringIO())


# --- documentation ----------------------------------------------------------------------------


def test_decorated_operations_document_the_optional_header() -> None:
    from drf_spectacular.generators import SchemaGenerator

    # when the schema is generated
    schema = SchemaGenerator().get_schema(request=None, public=True)

    # then the rotation keeps its own metadata and declares the optional header
    operation = schema["paths"]["/api/v1/users/me/signing-key/rotate"]["post"]
    assert operation["operationId"] == "users_me_signing_key_rotate"
    assert [(p["in"], p["name"], p.get("required", False)) for p in operation["parameters"]] == [
        ("header", IDEMPOTENCY_KEY_HEADER, False)
    ]
