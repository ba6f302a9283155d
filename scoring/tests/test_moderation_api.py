"""`/api/v1/moderation/flags`: the queue for tooling, moderators only, decisions through the
same services as the admin, errors in the envelope."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from rest_framework.test import APIClient

from accounts.models import Role, User
from accounts.services import token_pair_for_credentials
from accounts.tests.helpers import UtcTimestamp, assert_error
from conftest import TEST_PASSWORD
from scoring.models import ModerationDecision, ScoreStatus, ScoreUpdate
from scoring.tests.moderation_fixtures import IP_HOP, TOO_FAST, all_time_score, record_update

pytestmark = pytest.mark.django_db

FLAGS_URL = "/api/v1/moderation/flags"


def approve_url(update_id: Any) -> str:
    return f"{FLAGS_URL}/{update_id}/approve"


def reject_url(update_id: Any) -> str:
    return f"{FLAGS_URL}/{update_id}/reject"


def client_for(user: User) -> APIClient:
    pair = token_pair_for_credentials(username=user.username, password=TEST_PASSWORD)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {pair.access}")
    return client


@pytest.fixture
def mod_client(moderator: User) -> APIClient:
    return client_for(moderator)


def flag_data(update: ScoreUpdate, **changes: Any) -> dict[str, Any]:
    """The API's view of an update, before any decision unless `changes` say otherwise."""
    update.refresh_from_db()
    user = update.user
    return {
        "id": str(update.pk),
        "user": {"id": str(user.pk), "username": user.username, "isActive": user.is_active},
        "actionType": update.action_type,
        "actionId": str(update.action_id),
        "scoreIncrement": update.score_increment,
        "status": update.status,
        "reasons": [reason["code"] for reason in update.risk_reasons],
        "riskReasons": update.risk_reasons,
        "ipAddress": update.ip_address,
        "createdAt": update.created_at.isoformat().replace("+00:00", "Z"),
        "playerScore": all_time_score(user) or None,
        "reviewDecision": "",
        "reviewedBy": None,
        "reviewedAt": None,
        "reviewReason": "",
        "reversalId": None,
        **changes,
    }


# --- who may use it -------------------------------------------------------------------------


def test_an_anonymous_caller_is_unauthorized(api_client: APIClient, cheater: User) -> None:
    update = record_update(cheater, 100, status=ScoreStatus.HELD)

    for response in (
        api_client.get(FLAGS_URL),
        api_client.post(approve_url(update.pk), {}, format="json"),
        api_client.post(reject_url(update.pk), {}, format="json"),
    ):
        assert_error(
            response,
            status_code=401,
            code="UNAUTHORIZED",
            message="Authentication credentials were not provided.",
        )


@pytest.mark.parametrize("who", ["player", "moderator-without-group", "player-in-group"])
def test_anyone_but_a_moderator_is_forbidden(
    make_user: Callable[..., User],
    make_moderator: Callable[..., User],
    cheater: User,
    who: str,
) -> None:
    from django.contrib.auth.models import Group

    from accounts.models import MODERATORS_GROUP

    if who == "player":
        caller = make_user(username="plain")
    elif who == "moderator-without-group":
        caller = make_moderator(username="ungrouped")
        caller.groups.clear()
    else:
        caller = make_user(username="grouped")
        caller.groups.add(Group.objects.get(name=MODERATORS_GROUP))
    client = client_for(caller)
    update = record_update(cheater, 100, status=ScoreStatus.HELD)

    for response in (
        client.get(FLAGS_URL),
        client.post(approve_url(update.pk), {}, format="json"),
        client.post(reject_url(update.pk), {}, format="json"),
    ):
        assert_error(
            response,
            status_code=403,
            code="FORBIDDEN",
            message="Only moderators may use the moderation queue.",
        )
    update.refresh_from_db()
    assert update.status == ScoreStatus.HELD
    assert not ModerationDecision.objects.exists()


def test_an_admin_may_use_it(make_user: Callable[..., User], cheater: User) -> None:
    client = client_for(make_user(role=Role.ADMIN))
    update = record_update(cheater, 100, status=ScoreStatus.HELD)

    assert client.get(FLAGS_URL).status_code == 200
    assert client.post(approve_url(update.pk), format="json").status_code == 200


# --- the list -------------------------------------------------------------------------------


def test_the_list_holds_flagged_and_held_updates_newest_first(
    mod_client: APIClient,
    cheater: User,
    make_user: Callable[..., User],
    django_assert_max_num_queries: Any,
) -> None:
    honest = make_user(username="honest")
    record_update(honest, 10)
    flagged = record_update(cheater, 100, status=ScoreStatus.FLAGGED, reasons=[IP_HOP])
    held = record_update(
        honest, 50, status=ScoreStatus.HELD, reasons=[TOO_FAST, IP_HOP], action_type="GRIND"
    )
    decided = record_update(cheater, 20, status=ScoreStatus.HELD)
    ScoreUpdate.objects.filter(pk=decided.pk).update(status=ScoreStatus.REJECTED)

    with django_assert_max_num_queries(4):
        response = mod_client.get(FLAGS_URL)

    assert response.status_code == 200
    assert response.json() == {
        "success": True,
        "data": {
            "items": [flag_data(held), flag_data(flagged)],
            "next": None,
            "previous": None,
        },
    }


def test_the_list_filters_by_status_reason_and_action_type(
    mod_client: APIClient, cheater: User
) -> None:
    flagged = record_update(cheater, 100, status=ScoreStatus.FLAGGED, reasons=[IP_HOP])
    held = record_update(cheater, 50, status=ScoreStatus.HELD, reasons=[TOO_FAST])
    grind = record_update(
        cheater, 30, status=ScoreStatus.HELD, reasons=[TOO_FAST, IP_HOP], action_type="GRIND"
    )

    def ids(query: str) -> list[str]:
        response = mod_client.get(f"{FLAGS_URL}?{query}")
        assert response.status_code == 200, response.content
        return [item["id"] for item in response.json()["data"]["items"]]

    assert ids("status=FLAGGED") == [str(flagged.pk)]
    assert ids("status=HELD") == [str(grind.pk), str(held.pk)]
    assert ids("reason=IP_HOP") == [str(grind.pk), str(flagged.pk)]
    assert ids("reason=TOO_FAST&status=HELD") == [str(grind.pk), str(held.pk)]
    assert ids("actionType=GRIND") == [str(grind.pk)]
    assert ids("reason=POINTS_PER_WINDOW") == []


def test_the_list_is_paginated_with_cursors(mod_client: APIClient, cheater: User) -> None:
    updates = [record_update(cheater, n, status=ScoreStatus.HELD) for n in (1, 2, 3)]

    first = mod_client.get(f"{FLAGS_URL}?limit=2").json()["data"]
    second = mod_client.get(first["next"]).json()["data"]

    assert [item["scoreIncrement"] for item in first["items"]] == [3, 2]
    assert [item["id"] for item in second["items"]] == [str(updates[0].pk)]
    assert second["next"] is None
    assert second["previous"] is not None


def test_bad_filters_are_invalid_input(mod_client: APIClient) -> None:
    response = mod_client.get(f"{FLAGS_URL}?status=COUNTED")

    assert_error(
        response,
        status_code=400,
        code="INVALID_INPUT",
        message='status: "COUNTED" is not a valid choice.',
        details={"status": ['"COUNTED" is not a valid choice.']},
    )
    assert mod_client.get(f"{FLAGS_URL}?sort=score").status_code == 400
    assert mod_client.get(f"{FLAGS_URL}?actionType=lower").status_code == 400


# --- decisions ------------------------------------------------------------------------------


def test_approving_a_held_update_counts_it(
    mod_client: APIClient, moderator: User, cheater: User
) -> None:
    held = record_update(cheater, 100, status=ScoreStatus.HELD, reasons=[TOO_FAST])

    response = mod_client.post(approve_url(held.pk), {"reason": "verified replay"}, format="json")

    assert response.status_code == 200
    assert response.json() == {
        "success": True,
        "data": flag_data(
            held,
            status="COUNTED",
            playerScore=100,
            reviewDecision="APPROVED",
            reviewedBy=str(moderator.pk),
            reviewedAt=UtcTimestamp(),
            reviewReason="verified replay",
        ),
        "message": "Update approved.",
    }
    assert all_time_score(cheater) == 100


def test_approving_again_answers_with_the_outcome_already_reached(
    mod_client: APIClient, cheater: User
) -> None:
    held = record_update(cheater, 100, status=ScoreStatus.HELD)
    first = mod_client.post(approve_url(held.pk), format="json").json()

    again = mod_client.post(approve_url(held.pk), format="json")

    assert again.status_code == 200
    assert again.json() == {**first, "message": "Already approved; nothing changed."}
    assert all_time_score(cheater) == 100
    assert ModerationDecision.objects.count() == 1


def test_rejecting_a_flagged_update_reverts_it(
    mod_client: APIClient, moderator: User, cheater: User
) -> None:
    record_update(cheater, 40)
    flagged = record_update(cheater, 100, status=ScoreStatus.FLAGGED, reasons=[IP_HOP])

    response = mod_client.post(reject_url(flagged.pk), {"reason": "bot"}, format="json")
    again = mod_client.post(reject_url(flagged.pk), {}, format="json")

    reversal = ScoreUpdate.objects.get(status=ScoreStatus.REVERSAL)
    assert response.status_code == 200
    assert response.json() == {
        "success": True,
        "data": flag_data(
            flagged,
            status="REJECTED",
            playerScore=40,
            reviewDecision="REJECTED",
            reviewedBy=str(moderator.pk),
            reviewedAt=UtcTimestamp(),
            reviewReason="bot",
            reversalId=str(reversal.pk),
        ),
        "message": "Update rejected.",
    }
    assert again.json()["message"] == "Already rejected; nothing changed."
    assert again.json()["data"] == response.json()["data"]
    assert all_time_score(cheater) == 40


def test_approving_a_rejected_update_is_a_conflict(mod_client: APIClient, cheater: User) -> None:
    held = record_update(cheater, 100, status=ScoreStatus.HELD)
    mod_client.post(reject_url(held.pk), format="json")

    response = mod_client.post(approve_url(held.pk), format="json")

    assert_error(
        response,
        status_code=409,
        code="DECISION_CONFLICT",
        message="The update was rejected; it cannot be approved.",
    )
    assert all_time_score(cheater) == 0


def test_an_unknown_update_is_not_found(mod_client: APIClient) -> None:
    for url in (approve_url(uuid.uuid4()), reject_url(uuid.uuid4())):
        assert_error(
            mod_client.post(url, format="json"),
            status_code=404,
            code="NOT_FOUND",
            message="No score update with that id.",
        )
    assert mod_client.post(f"{FLAGS_URL}/not-a-uuid/approve", format="json").status_code == 404


def test_a_decision_body_is_strict(mod_client: APIClient, cheater: User) -> None:
    held = record_update(cheater, 100, status=ScoreStatus.HELD)

    unknown = mod_client.post(reject_url(held.pk), {"points": 5}, format="json")
    too_long = mod_client.post(reject_url(held.pk), {"reason": "x" * 501}, format="json")
    not_text = mod_client.post(reject_url(held.pk), {"reason": 5}, format="json")

    assert_error(
        unknown,
        status_code=400,
        code="INVALID_INPUT",
        message="points: Unknown field.",
        details={"points": ["Unknown field."]},
    )
    assert too_long.status_code == 400
    assert not_text.status_code == 400
    held.refresh_from_db()
    assert held.status == ScoreStatus.HELD


def test_a_retry_with_the_same_idempotency_key_replays_the_answer(
    mod_client: APIClient, cheater: User
) -> None:
    held = record_update(cheater, 100, status=ScoreStatus.HELD)

    first = mod_client.post(approve_url(held.pk), {}, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    again = mod_client.post(approve_url(held.pk), {}, format="json", HTTP_IDEMPOTENCY_KEY="k-1")

    assert again.status_code == 200
    assert again["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert ModerationDecision.objects.count() == 1
