"""GET /api/v1/users/me/export: everything held about the caller, in one document."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.django import TestCase
from rest_framework import status
from rest_framework.test import APIClient
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken

from accounts.models import Role, User
from accounts.selectors import user_signing_key
from accounts.services import token_pair_for_credentials, token_pair_refresh
from accounts.tests.helpers import UtcTimestamp, assert_error, iso
from conftest import TEST_PASSWORD
from scoring.models import ActionToken, ModerationDecision, ScoreStatus, ScoreUpdate
from scoring.moderation import score_update_reject, user_ban
from scoring.periods import ALL_TIME_START
from scoring.tests.fixtures import GameServerKey, stored_action_token
from scoring.tests.moderation_fixtures import IP_HOP, record_update

pytestmark = pytest.mark.django_db

EXPORT_URL = "/api/v1/users/me/export"
T1 = datetime(2026, 11, 20, 9, 30, tzinfo=UTC)
T2 = datetime(2026, 11, 21, 18, 5, 12, 250000, tzinfo=UTC)


def client_for(user: User) -> APIClient:
    client = APIClient()
    pair = token_pair_for_credentials(username=user.username, password=TEST_PASSWORD)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {pair.access}")
    return client


def action_token_for(user: User, game_server: GameServerKey, **fields: Any) -> ActionToken:
    return stored_action_token(user, game_server, expires_at=T1 + timedelta(minutes=5), **fields)


def exported(user: User) -> dict[str, Any]:
    response = client_for(user).get(EXPORT_URL)
    assert response.status_code == status.HTTP_200_OK, response.content
    body = response.json()
    assert set(body) == {"success", "data"}
    return dict(body["data"])


def test_the_export_holds_every_row_about_the_caller(
    make_user: Callable[..., User],
    make_moderator: Callable[..., User],
    game_server: GameServerKey,
    catalog: None,
) -> None:
    # given a player with a counted and a rejected hold, a spent action token, two
    # refresh-token pairs (one refreshed, so blacklisted), and a moderator's decision
    player = make_user(username="ProGamer123", email="pro@example.com", country="US")
    moderator = make_moderator(username="mod_alice")
    token = action_token_for(player, game_server, used_at=T1 + timedelta(seconds=3), is_valid=False)
    counted = record_update(player, 100, at=T1)
    ScoreUpdate.objects.filter(pk=counted.pk).update(action_token=token, client_timestamp=T1)
    held = record_update(
        player, 50, status=ScoreStatus.HELD, at=T2, reasons=[IP_HOP], ip_address="2001:db8::1"
    )
    score_update_reject(update_id=held.pk, moderator=moderator, reason="bot-like")
    first = token_pair_for_credentials(username=player.username, password=TEST_PASSWORD)
    token_pair_refresh(refresh_token=first.refresh)

    # when the player asks for their export
    data = exported(player)

    # then every row is there, as stored, and nothing else
    player.refresh_from_db()
    held.refresh_from_db()
    decision = ModerationDecision.objects.get()
    refresh_rows = OutstandingToken.objects.filter(user=player).order_by("-created_at", "-id")
    blacklisted = {b.token_id: b.blacklisted_at for b in BlacklistedToken.objects.all()}
    assert data == {
        "formatVersion": 1,
        "exportedAt": UtcTimestamp(),
        "profile": {
            "id": str(player.pk),
            "username": "ProGamer123",
            "email": "pro@example.com",
            "country": "US",
            "avatar": "",
            "role": "user",
            "isActive": True,
            "hideFromLeaderboards": False,
            "signingKeyVersion": 1,
            "groups": [],
            "permissions": [],
            "createdAt": iso(player.created_at),
            "lastActive": iso(player.last_active_at),
            "lastLogin": None,
        },
        "scoreHistory": [
            {
                "id": str(held.pk),
                "board": "global",
                "actionType": "WIN_GAME",
                "actionId": str(held.action_id),
                "actionTokenId": None,
                "scoreIncrement": 50,
                "previousScore": 100,
                "newScore": 100,
                "previousRank": None,
                "newRank": None,
                "status": "REJECTED",
                "riskReasons": [IP_HOP],
                "ipAddress": "2001:db8::1",
                "userAgent": "pytest",
                "clientTimestamp": None,
                "verified": True,
                "createdAt": "2026-11-21T18:05:12.250000Z",
                "reviewDecision": "REJECTED",
                "reviewReason": "bot-like",
                "reviewedAt": iso(held.reviewed_at),
                "reversesId": None,
            },
            {
                "id": str(counted.pk),
                "board": "global",
                "actionType": "WIN_GAME",
                "actionId": str(counted.action_id),
                "actionTokenId": str(token.pk),
                "scoreIncrement": 100,
                "previousScore": 0,
                "newScore": 100,
                "previousRank": None,
                "newRank": None,
                "status": "COUNTED",
                "riskReasons": [],
                "ipAddress": "203.0.113.7",
                "userAgent": "pytest",
                "clientTimestamp": "2026-11-20T09:30:00Z",
                "verified": True,
                "createdAt": "2026-11-20T09:30:00Z",
                "reviewDecision": "",
                "reviewReason": "",
                "reviewedAt": None,
                "reversesId": None,
            },
        ],
        "totals": [
            {
                "board": "global",
                "period": period,
                "periodStart": start,
                "score": 100,
                "reachedAt": "2026-11-20T09:30:00Z",
            }
            for period, start in [
                ("ALL_TIME", ALL_TIME_START.isoformat()),
                ("DAILY", "2026-11-20"),
                ("MONTHLY", "2026-11-01"),
                ("WEEKLY", "2026-11-16"),
            ]
        ],
        "actionTokens": [
            {
                "id": str(token.pk),
                "actionType": "WIN_GAME",
                "actionId": str(token.action_id),
                "points": 100,
                "completedAt": "2026-11-20T09:30:00Z",
                "createdAt": iso(token.created_at),
                "expiresAt": "2026-11-20T09:35:00Z",
                "usedAt": "2026-11-20T09:30:03Z",
                "isValid": False,
            }
        ],
        "refreshTokens": [
            {
                "jti": row.jti,
                "createdAt": iso(row.created_at),
                "expiresAt": iso(row.expires_at),
                "blacklistedAt": iso(blacklisted[row.pk]) if row.pk in blacklisted else None,
            }
            for row in refresh_rows
        ],
        "moderationDecisions": [
            {
                "id": str(decision.pk),
                "action": "REJECT",
                "previousStatus": "HELD",
                "newStatus": "REJECTED",
                "points": 0,
                "reason": "bot-like",
                "createdAt": iso(decision.created_at),
                "scoreUpdateId": str(held.pk),
            }
        ],
        "moderationDecisionsTaken": [],
    }
    # the two pairs of the test, and the one the export request signed in with
    assert len(data["refreshTokens"]) == 3
    assert sum(row["blacklistedAt"] is not None for row in data["refreshTokens"]) == 1


def test_the_export_holds_no_secret_and_no_moderator_identity(
    make_user: Callable[..., User], make_moderator: Callable[..., User]
) -> None:
    # given a player with tokens, a moderator's decision and a ban
    player = make_user(username="ProGamer123", email="pro@example.com")
    moderator = make_moderator(username="mod_alice", email="alice@studio.example")
    held = record_update(player, 50, status=ScoreStatus.HELD)
    score_update_reject(update_id=held.pk, moderator=moderator)
    pair = token_pair_for_credentials(username=player.username, password=TEST_PASSWORD)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {pair.access}")

    # when they export
    text = client.get(EXPORT_URL).content.decode()

    # then neither their secrets nor the moderator appear anywhere in it
    player.refresh_from_db()
    for secret in (
        player.password,
        pair.refresh,
        pair.access,
        user_signing_key(player),
        str(moderator.pk),
        moderator.username,
        moderator.email,
        *OutstandingToken.objects.values_list("token", flat=True),
    ):
        assert secret not in text


def test_a_moderator_sees_the_decisions_they_took_without_the_players(
    make_user: Callable[..., User], make_moderator: Callable[..., User]
) -> None:
    # given a moderator who banned a player, with a direct permission
    moderator = make_moderator(username="mod_alice")
    moderator.user_permissions.add(Permission.objects.get(codename="view_user"))
    cheater = make_user(username="speedy")
    decision = user_ban(user_id=cheater.pk, moderator=moderator, reason="aimbot").decision

    # when the moderator exports
    data = exported(moderator)

    # then their role, group and permission are there, and the decision without the player
    assert (data["profile"]["role"], data["profile"]["groups"]) == (Role.MODERATOR, ["Moderators"])
    assert data["profile"]["permissions"] == ["accounts.view_user"]
    assert data["moderationDecisionsTaken"] == [
        {
            "id": str(decision.pk),
            "action": "BAN",
            "previousStatus": "",
            "newStatus": "",
            "points": 0,
            "reason": "aimbot",
            "createdAt": iso(decision.created_at),
        }
    ]
    assert str(cheater.pk) not in json.dumps(data)
    assert data["moderationDecisions"] == []


def test_the_export_costs_the_same_queries_whatever_its_size(
    make_user: Callable[..., User], django_assert_num_queries: Any
) -> None:
    # given a player with many updates
    player = make_user()
    for _ in range(30):
        record_update(player, 10)
    client = client_for(player)

    # when they export, then one query per kind of row answers, after the user's own
    with django_assert_num_queries(9):
        response = client.get(EXPORT_URL)
    assert len(response.json()["data"]["scoreHistory"]) == 30


def test_the_export_needs_a_signed_in_user(api_client: APIClient) -> None:
    # when someone without a token asks for an export, then it is refused
    assert_error(
        api_client.get(EXPORT_URL),
        status_code=status.HTTP_401_UNAUTHORIZED,
        code="UNAUTHORIZED",
        message="Authentication credentials were not provided.",
    )


@pytest.mark.parametrize("method", ["post", "put", "patch", "delete"])
def test_the_export_is_read_only(auth_client: APIClient, method: str) -> None:
    response = getattr(auth_client, method)(EXPORT_URL, {}, format="json")

    assert_error(
        response,
        status_code=status.HTTP_405_METHOD_NOT_ALLOWED,
        code="METHOD_NOT_ALLOWED",
        message=f'Method "{method.upper()}" not allowed.',
    )


# Any history: statuses, points, addresses and times, for the caller and for someone else.
histories = st.lists(
    st.tuples(
        st.booleans(),  # the caller's (else the other player's)
        st.sampled_from([ScoreStatus.COUNTED, ScoreStatus.FLAGGED, ScoreStatus.HELD]),
        st.integers(min_value=1, max_value=1000),
        st.sampled_from([None, "203.0.113.7", "2001:db8::7"]),
        st.integers(min_value=0, max_value=400 * 86400),
    ),
    max_size=12,
)


class TestExportProperties(TestCase):
    @settings(max_examples=25, deadline=None)
    @given(history=histories)
    def test_the_export_lists_exactly_the_callers_updates_and_totals(
        self, history: list[tuple[bool, str, int, str | None, int]]
    ) -> None:
        # given two players and a random history of both
        mine = User.objects.create_user("caller", "caller@example.com", TEST_PASSWORD)
        other = User.objects.create_user("other", "other@example.com", TEST_PASSWORD)
        start = datetime(2025, 1, 1, tzinfo=UTC)
        for is_mine, status_, points, address, seconds in history:
            record_update(
                mine if is_mine else other,
                points,
                status=status_,
                ip_address=address,
                at=start + timedelta(seconds=seconds),
            )

        # when the caller exports
        data = exported(mine)

        # then the history holds exactly their rows, newest first, as stored
        rows = ScoreUpdate.objects.filter(user=mine).order_by("-created_at", "-id")
        assert [
            (row["id"], row["status"], row["scoreIncrement"], row["ipAddress"])
            for row in data["scoreHistory"]
        ] == [(str(r.pk), r.status, r.score_increment, r.ip_address) for r in rows]
        # and their totals add up to what counted
        all_time = [t for t in data["totals"] if t["period"] == "ALL_TIME"]
        counted = sum(
            points
            for is_mine, status_, points, _, _ in history
            if is_mine and status_ != ScoreStatus.HELD
        )
        assert [t["score"] for t in all_time] == ([counted] if counted else [])
