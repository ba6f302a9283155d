"""DELETE /api/v1/users/me: the player erases their account (docs/privacy.md)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import pytest
from django.utils import timezone
from rest_framework import status
from rest_framework.test import APIClient
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken

from accounts.models import USERNAME_PATTERN, Role, User
from accounts.services import TokenPair, token_pair_for_credentials, user_erase
from accounts.tests.helpers import (
    ME_URL,
    REFRESH_URL,
    REGISTER_URL,
    TOKEN_URL,
    assert_error,
    assert_invalid,
)
from conftest import TEST_PASSWORD
from leaderboard.models import LeaderboardSnapshot
from scoreboard.config import Rate
from scoreboard.errors import Unauthorized
from scoreboard.models import IdempotencyRecord
from scoring.models import ActionToken, ModerationDecision, ScoreStatus, ScoreTotal, ScoreUpdate
from scoring.moderation import score_update_approve
from scoring.services import hash_action_token
from scoring.tests.fixtures import GameServerKey
from scoring.tests.moderation_fixtures import IP_HOP, record_update

pytestmark = pytest.mark.django_db

EXPORT_URL = "/api/v1/users/me/export"
WRONG_PASSWORD = "The password is not correct."
REVOKED = "Invalid or expired authentication token."


@dataclass
class Account:
    """A signed-in player and their API client."""

    user: User
    pair: TokenPair
    client: APIClient

    def erase(self, password: str = TEST_PASSWORD) -> Any:
        return self.client.delete(ME_URL, {"password": password}, format="json")


@pytest.fixture
def sign_in() -> Callable[[User], Account]:
    def sign_in_(user: User) -> Account:
        pair = token_pair_for_credentials(username=user.username, password=TEST_PASSWORD)
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {pair.access}")
        return Account(user=user, pair=pair, client=client)

    return sign_in_


@pytest.fixture
def account(make_user: Callable[..., User], sign_in: Callable[[User], Account]) -> Account:
    return sign_in(
        make_user(
            username="ProGamer123",
            email="pro@example.com",
            country="US",
            avatar="https://cdn.example.com/me.png",
        )
    )


def stored(user: User) -> dict[str, Any]:
    return dict(User.objects.filter(pk=user.pk).values()[0])


# --- what goes ------------------------------------------------------------------------------


def test_erasing_removes_the_personal_data_and_answers_204(
    account: Account, django_capture_on_commit_callbacks: Any
) -> None:
    # given a signed-in player
    before = stored(account.user)

    # when they erase their account with their password
    with django_capture_on_commit_callbacks(execute=True):
        response = account.erase()

    # then the answer is an empty 204, and the row keeps nothing that identifies them
    assert (response.status_code, response.content) == (status.HTTP_204_NO_CONTENT, b"")
    user = User.objects.get(pk=account.user.pk)
    assert re.match(USERNAME_PATTERN, user.username)
    assert re.fullmatch(r"erased-[0-9a-f]{24}", user.username)
    assert user.email == f"{user.username}@erased.invalid"
    assert (user.avatar, user.country) == ("", "")
    assert not user.has_usable_password()
    assert (user.is_active, user.hide_from_leaderboards, user.role) == (False, True, Role.USER)
    assert user.erased_at is not None
    assert user.signing_key_version == before["signing_key_version"] + 1
    assert (user.id, user.created_at) == (before["id"], before["created_at"])


def test_erased_placeholders_stay_unique(
    make_user: Callable[..., User], sign_in: Callable[[User], Account]
) -> None:
    # when two players erase their accounts
    first, second = sign_in(make_user()), sign_in(make_user())
    assert first.erase().status_code == second.erase().status_code == 204

    # then their placeholders differ
    erased = User.objects.filter(erased_at__isnull=False)
    assert len({user.username for user in erased}) == len({user.email for user in erased}) == 2


def test_the_audit_log_stays_without_network_details(
    account: Account, make_moderator: Callable[..., User]
) -> None:
    # given counted, flagged (with an address-quoting reason) and held updates, a moderator's
    # decision, and totals
    player, moderator = account.user, make_moderator(username="mod_alice")
    counted = record_update(player, 100)
    flagged = record_update(player, 50, status=ScoreStatus.FLAGGED, reasons=[IP_HOP])
    held = record_update(player, 25, status=ScoreStatus.HELD)
    score_update_approve(update_id=flagged.pk, moderator=moderator, reason="fine")
    totals = list(ScoreTotal.objects.filter(user=player).values("period", "score", "version"))

    # when the player erases their account
    assert account.erase().status_code == 204

    # then every update and decision is kept, linked to the anonymised user, minus the
    # address, the user agent and the addresses of the IP_HOP detail
    rows = {row.pk: row for row in ScoreUpdate.objects.filter(user=player)}
    assert set(rows) == {counted.pk, flagged.pk, held.pk}
    assert {(row.ip_address, row.user_agent) for row in rows.values()} == {(None, "")}
    assert rows[flagged.pk].risk_reasons == [
        {**IP_HOP, "detail": "Another address 2 s after the previous update (addresses removed)."}
    ]
    assert rows[held.pk].status == ScoreStatus.HELD  # still waiting for a moderator
    assert list(ModerationDecision.objects.values_list("user_id", "moderator_id")) == [
        (player.pk, moderator.pk)
    ]
    # and the totals stay as they were (kept, but no board shows an inactive player)
    assert list(ScoreTotal.objects.filter(user=player).values("period", "score", "version")) == (
        totals
    )


def test_tokens_of_every_kind_stop_working(
    account: Account, game_server: GameServerKey, catalog: None
) -> None:
    # given a second session, an unspent action token and a spent one
    other_session = token_pair_for_credentials(
        username=account.user.username, password=TEST_PASSWORD
    )
    unspent, spent = (
        ActionToken.objects.create(
            user=account.user,
            action_type_id="WIN_GAME",
            action_id=uuid.uuid4(),
            game_server=game_server.server,
            token_hash=hash_action_token(uuid.uuid4().hex),
            points=100,
            completed_at=timezone.now(),
            expires_at=timezone.now() + timedelta(minutes=5),
            used_at=used_at,
            is_valid=used_at is None,
        )
        for used_at in (None, timezone.now())
    )

    # when the player erases their account
    assert account.erase().status_code == 204

    # then every refresh token is blacklisted and refused
    outstanding = OutstandingToken.objects.filter(user=account.user)
    assert outstanding.count() == 2
    assert BlacklistedToken.objects.filter(token__in=outstanding).count() == 2
    for refresh in (account.pair.refresh, other_session.refresh):
        response = APIClient().post(REFRESH_URL, {"refreshToken": refresh}, format="json")
        assert response.status_code == status.HTTP_401_UNAUTHORIZED
    # the unspent action token is invalid, the spent one as it was
    unspent.refresh_from_db()
    spent.refresh_from_db()
    assert (unspent.is_valid, unspent.used_at) == (False, None)
    assert spent.used_at is not None
    # and the access token is refused: a second erasure, the profile, the export
    for response in (
        account.erase(),
        account.client.get(ME_URL),
        account.client.get(EXPORT_URL),
    ):
        assert_error(
            response,
            status_code=status.HTTP_401_UNAUTHORIZED,
            code="UNAUTHORIZED",
            message=REVOKED,
        )


def test_old_access_tokens_die_with_the_password_alone(account: Account) -> None:
    # given an erased account that an admin then ticked active again
    assert account.erase().status_code == 204
    User.objects.filter(pk=account.user.pk).update(is_active=True)

    # when the old access token is used, then the password digest it carries refuses it
    assert_error(
        account.client.get(ME_URL),
        status_code=status.HTTP_401_UNAUTHORIZED,
        code="UNAUTHORIZED",
        message=REVOKED,
    )


def test_an_erased_player_cannot_sign_in_and_their_name_is_free_again(
    account: Account, api_client: APIClient
) -> None:
    # given an erased account
    assert account.erase().status_code == 204
    placeholder = User.objects.get(pk=account.user.pk).username

    # when anyone tries to sign in as it, by the old or the new name
    for username in ("ProGamer123", placeholder):
        response = api_client.post(
            TOKEN_URL, {"username": username, "password": TEST_PASSWORD}, format="json"
        )
        # then it is refused
        assert_error(
            response,
            status_code=status.HTTP_401_UNAUTHORIZED,
            code="UNAUTHORIZED",
            message="Invalid username or password.",
        )

    # and someone new may register the old username and email
    response = api_client.post(
        REGISTER_URL,
        {"username": "progamer123", "email": "PRO@example.com", "password": TEST_PASSWORD},
        format="json",
    )
    assert response.status_code == status.HTTP_201_CREATED, response.content
    assert User.objects.get(username="progamer123").pk != account.user.pk


def test_archived_standings_and_stored_answers_forget_the_player(
    account: Account, make_user: Callable[..., User]
) -> None:
    # given a snapshot listing the player and someone else, and a stored idempotent answer
    other = make_user(username="other")

    def entry(user: User, rank: int) -> dict[str, Any]:
        return {
            "rank": rank,
            "userId": str(user.pk),
            "username": user.username,
            "score": 100 // rank,
            "avatar": user.avatar,
            "country": user.country,
            "lastUpdated": "2026-11-27T12:00:00Z",
        }

    snapshot = LeaderboardSnapshot.objects.create(
        period="DAILY",
        period_start=date(2026, 11, 27),
        entries=[entry(account.user, 1), entry(other, 2)],
        total_users=2,
    )
    IdempotencyRecord.objects.create(user=account.user, key="k1", fingerprint="f" * 64)
    IdempotencyRecord.objects.create(user=other, key="k1", fingerprint="f" * 64)

    # when the player erases their account
    assert account.erase().status_code == 204

    # then the snapshot keeps only the other entry, and only the other's answer is kept
    snapshot.refresh_from_db()
    assert snapshot.entries == [entry(other, 2)]
    assert list(IdempotencyRecord.objects.values_list("user_id", flat=True)) == [other.pk]


def test_a_moderator_may_erase_themselves_and_their_decisions_stay(
    make_moderator: Callable[..., User],
    make_user: Callable[..., User],
    sign_in: Callable[[User], Account],
) -> None:
    # given a moderator who decided on a player's update
    moderator = sign_in(make_moderator(username="mod_alice"))
    flagged = record_update(make_user(), 50, status=ScoreStatus.FLAGGED)
    score_update_approve(update_id=flagged.pk, moderator=moderator.user)

    # when the moderator erases their account
    assert moderator.erase().status_code == 204

    # then they lost their role and group, and the decision still names the (anonymised) row
    user = User.objects.get(pk=moderator.user.pk)
    assert (user.role, list(user.groups.all())) == (Role.USER, [])
    assert ModerationDecision.objects.get().moderator_id == user.pk
    flagged.refresh_from_db()
    assert flagged.reviewed_by_id == user.pk


# --- what is refused ------------------------------------------------------------------------


def test_a_wrong_password_is_unauthorized_and_changes_nothing(account: Account) -> None:
    # given the stored account
    before = stored(account.user)

    # when the erasure is confirmed with a wrong password
    response = account.erase("not my password")

    # then it is refused and nothing changed; the token still works
    assert_error(
        response,
        status_code=status.HTTP_401_UNAUTHORIZED,
        code="UNAUTHORIZED",
        message=WRONG_PASSWORD,
    )
    assert stored(account.user) == before
    assert not BlacklistedToken.objects.exists()
    assert account.client.get(ME_URL).status_code == status.HTTP_200_OK


@pytest.mark.parametrize(
    ("body", "details"),
    [
        ({}, {"password": ["This field is required."]}),
        (None, {"password": ["This field is required."]}),
        ({"password": 12345678}, {"password": ["Not a valid string."]}),
        ({"password": ""}, {"password": ["This field may not be blank."]}),
        (
            {"password": TEST_PASSWORD, "reason": "bye"},
            {"reason": ["Unknown field."]},
        ),
    ],
)
def test_a_missing_or_malformed_password_is_invalid_and_changes_nothing(
    account: Account, body: Any, details: dict[str, list[str]]
) -> None:
    before = stored(account.user)

    response = account.client.delete(ME_URL, body, format="json")

    assert_invalid(response, details)
    assert stored(account.user) == before


def test_erasing_needs_a_signed_in_user(api_client: APIClient, account: Account) -> None:
    before = stored(account.user)

    response = api_client.delete(ME_URL, {"password": TEST_PASSWORD}, format="json")

    assert_error(
        response,
        status_code=status.HTTP_401_UNAUTHORIZED,
        code="UNAUTHORIZED",
        message="Authentication credentials were not provided.",
    )
    assert stored(account.user) == before


def test_password_guesses_count_against_the_auth_rate(account: Account, settings: Any) -> None:
    # given an auth rate of two attempts a minute
    settings.SCOREBOARD_AUTH_RATE = Rate(2, 60)
    assert [account.erase("guess").status_code for _ in range(2)] == [401, 401]

    # when a third guess comes, even with the right password
    response = account.erase()

    # then it is limited and the account is untouched
    assert response.status_code == status.HTTP_429_TOO_MANY_REQUESTS
    assert response.json()["error"]["code"] == "RATE_LIMIT_EXCEEDED"
    assert User.objects.get(pk=account.user.pk).erased_at is None


def test_a_password_changed_since_the_check_refuses_the_erasure(account: Account) -> None:
    # given the caller's user as authenticated, and then a password change elsewhere
    caller = User.objects.get(pk=account.user.pk)
    changed = User.objects.get(pk=account.user.pk)
    changed.set_password("a brand new passphrase")
    changed.save(update_fields=["password"])

    # when the erasure runs with the password the caller's row still matches
    with pytest.raises(Unauthorized):
        user_erase(user=caller, password=TEST_PASSWORD)

    # then nothing was erased
    assert User.objects.get(pk=account.user.pk).erased_at is None
