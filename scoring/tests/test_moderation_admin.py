"""The moderation queue in the Django admin: what moderators see and do with exactly the
Moderators group's permissions, and that nobody else sees or does anything."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Group
from django.contrib.messages import get_messages
from django.test import Client
from django.utils import timezone
from django.utils.http import urlencode

from accounts.models import MODERATORS_GROUP, Role, User
from scoring.models import ModerationDecision, ReviewDecision, ScoreStatus, ScoreUpdate
from scoring.tests.moderation_fixtures import IP_HOP, TOO_FAST, all_time_score, record_update

pytestmark = pytest.mark.django_db

QUEUE_URL = "/admin/scoring/reviewitem/"


def change_url(update: ScoreUpdate) -> str:
    return f"{QUEUE_URL}{update.pk}/change/"


def decide_url(update: ScoreUpdate) -> str:
    return f"{QUEUE_URL}{update.pk}/decide/"


def logged_in(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def mod_client(moderator: User) -> Client:
    return logged_in(moderator)


@pytest.fixture
def queue(cheater: User, make_user: Callable[..., User]) -> dict[str, ScoreUpdate]:
    """A flagged and a held update of the cheater, one of an honest player, and an update
    nobody needs to review."""
    honest = make_user(username="honest_hannah", email="hannah@example.com")
    return {
        "plain": record_update(cheater, 10),
        "flagged": record_update(cheater, 100, status=ScoreStatus.FLAGGED, reasons=[IP_HOP]),
        "held": record_update(
            cheater, 400, status=ScoreStatus.HELD, reasons=[TOO_FAST], action_type="GRIND"
        ),
        "honest": record_update(
            honest,
            50,
            status=ScoreStatus.HELD,
            reasons=[IP_HOP],
            at=timezone.now() - timedelta(days=3),
        ),
    }


def listed(response: Any) -> set[Any]:
    assert response.status_code == 200, response.content[:500]
    return {row.pk for row in response.context["cl"].result_list}


def texts(response: Any) -> list[str]:
    """The messages waiting after this request (earlier unshown ones included)."""
    return [str(message) for message in get_messages(response.wsgi_request)]


# --- what a moderator sees ------------------------------------------------------------------


def test_the_queue_lists_flagged_and_held_updates_with_the_players_total(
    mod_client: Client, queue: dict[str, ScoreUpdate]
) -> None:
    response = mod_client.get(QUEUE_URL)

    assert listed(response) == {queue[name].pk for name in ("flagged", "held", "honest")}
    page = response.content.decode()
    assert "speedy" in page
    assert "TOO_FAST" in page
    assert "IP_HOP" in page
    # The cheater's total (110) beside each of their updates
    row = next(row for row in response.context["cl"].result_list if row.pk == queue["held"].pk)
    assert row.player_score == 110


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("status__exact=FLAGGED", {"flagged"}),
        ("status__exact=HELD", {"held", "honest"}),
        ("reason=TOO_FAST", {"held"}),
        ("reason=IP_HOP", {"flagged", "honest"}),
        ("action_type__exact=GRIND", {"held"}),
        ("{today}", {"flagged", "held"}),
        ("q=speedy", {"flagged", "held"}),
        ("q={user_id}", {"flagged", "held"}),
        ("q={action_id}", {"held"}),
        ("queue=all", {"flagged", "held", "honest"}),
    ],
)
def test_the_queue_filters_and_searches(
    mod_client: Client,
    queue: dict[str, ScoreUpdate],
    cheater: User,
    query: str,
    expected: set[str],
) -> None:
    midnight = timezone.now().replace(hour=0, minute=0, second=0, microsecond=0)
    today = urlencode(  # as the date filter's "Today" link has it
        {"created_at__gte": str(midnight), "created_at__lt": str(midnight + timedelta(days=1))}
    )
    query = query.format(today=today, user_id=cheater.pk, action_id=queue["held"].action_id)

    assert listed(mod_client.get(f"{QUEUE_URL}?{query}")) == {queue[n].pk for n in expected}


def test_decided_updates_leave_the_queue_and_are_listed_as_decided(
    mod_client: Client, moderator: User, queue: dict[str, ScoreUpdate]
) -> None:
    from scoring.moderation import score_update_reject

    score_update_reject(update_id=queue["held"].pk, moderator=moderator)

    assert queue["held"].pk not in listed(mod_client.get(QUEUE_URL))
    assert listed(mod_client.get(f"{QUEUE_URL}?queue=decided")) == {queue["held"].pk}
    assert listed(mod_client.get(f"{QUEUE_URL}?review_decision__exact=REJECTED")) == set()


def test_an_item_shows_the_players_totals_history_and_the_decision_buttons(
    mod_client: Client, queue: dict[str, ScoreUpdate]
) -> None:
    response = mod_client.get(change_url(queue["held"]))

    assert response.status_code == 200
    page = response.content.decode()
    assert 'data-testid="player-panel"' in page
    assert '<td data-testid="total-ALL_TIME">110</td>' in page
    assert 'data-testid="history-panel"' in page
    assert page.count("<tr") >= 3 + 9  # three updates in the history, nine player rows
    assert 'data-testid="this-update"' in page
    for button in ("approve", "reject", "ban"):
        assert f'data-testid="{button}"' in page
    assert 'name="_save"' not in page  # nothing here is edited


# --- what a moderator does ------------------------------------------------------------------


def test_approving_from_the_item_page_counts_the_held_points(
    mod_client: Client, moderator: User, cheater: User, queue: dict[str, ScoreUpdate]
) -> None:
    held = queue["held"]

    response = mod_client.post(
        decide_url(held), {"decision": "approve", "review_reason": "replay checked"}
    )

    assert response.status_code == 302
    assert response["Location"] == change_url(held)
    held.refresh_from_db()
    assert (held.status, held.review_decision, held.reviewed_by, held.review_reason) == (
        ScoreStatus.COUNTED,
        ReviewDecision.APPROVED,
        moderator,
        "replay checked",
    )
    assert all_time_score(cheater) == 510
    assert texts(response) == ["Approved: +400 points counted for speedy."]


def test_rejecting_from_the_item_page_reverts_the_flagged_points(
    mod_client: Client, cheater: User, queue: dict[str, ScoreUpdate]
) -> None:
    response = mod_client.post(
        decide_url(queue["flagged"]), {"decision": "reject", "review_reason": "IP farm"}
    )

    assert texts(response) == ["Rejected: -100 points reverted."]
    assert all_time_score(cheater) == 10
    assert ModerationDecision.objects.get().reason == "IP farm"


def test_a_conflicting_decision_is_reported_not_applied(
    mod_client: Client, cheater: User, queue: dict[str, ScoreUpdate]
) -> None:
    mod_client.post(decide_url(queue["held"]), {"decision": "reject"})

    response = mod_client.post(decide_url(queue["held"]), {"decision": "approve"})

    assert texts(response)[-1] == "The update was rejected; it cannot be approved."
    assert all_time_score(cheater) == 110


def test_banning_from_the_item_page_deactivates_the_player(
    mod_client: Client, cheater: User, queue: dict[str, ScoreUpdate]
) -> None:
    response = mod_client.post(
        decide_url(queue["held"]), {"decision": "ban", "review_reason": "aimbot"}
    )

    assert texts(response) == ["Banned speedy."]
    assert not User.objects.get(pk=cheater.pk).is_active
    assert ModerationDecision.objects.get().reason == "aimbot"
    page = mod_client.get(change_url(queue["held"])).content.decode()
    assert 'data-testid="ban"' not in page


def test_bulk_actions_decide_every_selected_update(
    mod_client: Client, cheater: User, queue: dict[str, ScoreUpdate]
) -> None:
    selected = [queue["flagged"].pk, queue["held"].pk]

    approved = mod_client.post(
        QUEUE_URL,
        {"action": "approve_selected", "_selected_action": selected, "reason": "tournament"},
    )
    assert texts(approved) == ["2 approved."]
    rejected = mod_client.post(
        f"{QUEUE_URL}?queue=all",
        {"action": "reject_selected", "_selected_action": [*selected, queue["plain"].pk]},
    )

    assert approved.status_code == 302
    # The plain update was never in the queue: it is not the queue's to decide
    assert texts(rejected)[-1] == "2 rejected."
    assert all_time_score(cheater) == 10
    decisions = ModerationDecision.objects.order_by("created_at")
    assert [(d.action, d.reason) for d in decisions][:2] == [
        ("APPROVE", "tournament"),
        ("APPROVE", "tournament"),
    ]
    assert ScoreUpdate.objects.filter(status=ScoreStatus.REVERSAL).count() == 2


def test_bulk_approval_reports_what_was_already_decided_or_refused(
    mod_client: Client, moderator: User, queue: dict[str, ScoreUpdate]
) -> None:
    from scoring.moderation import score_update_approve, score_update_reject

    score_update_approve(update_id=queue["flagged"].pk, moderator=moderator)
    score_update_reject(update_id=queue["honest"].pk, moderator=moderator)

    response = mod_client.post(
        f"{QUEUE_URL}?queue=all",
        {
            "action": "approve_selected",
            "_selected_action": [queue[n].pk for n in ("flagged", "held", "honest")],
        },
    )

    assert texts(response) == [
        "1 approved; 1 already approved; 1 refused "
        "(The update was rejected; it cannot be approved.)."
    ]


def test_bulk_ban_bans_each_player_once(
    mod_client: Client, cheater: User, queue: dict[str, ScoreUpdate]
) -> None:
    response = mod_client.post(
        QUEUE_URL,
        {
            "action": "ban_players",
            "_selected_action": [queue["flagged"].pk, queue["held"].pk],
            "reason": "ring",
        },
    )

    assert texts(response) == ["1 banned."]
    assert not User.objects.get(pk=cheater.pk).is_active
    assert ModerationDecision.objects.filter(action="BAN").count() == 1


def test_the_item_page_edits_nothing(mod_client: Client, queue: dict[str, ScoreUpdate]) -> None:
    response = mod_client.post(change_url(queue["held"]), {"status": "COUNTED"})

    assert response.status_code == 405
    queue["held"].refresh_from_db()
    assert queue["held"].status == ScoreStatus.HELD


def test_the_decision_log_and_audit_log_render_for_moderators(
    mod_client: Client, moderator: User, queue: dict[str, ScoreUpdate]
) -> None:
    from scoring.moderation import score_update_reject

    score_update_reject(update_id=queue["flagged"].pk, moderator=moderator, reason="bot")

    decisions = mod_client.get("/admin/scoring/moderationdecision/")
    audit = mod_client.get("/admin/scoring/scoreupdate/?status__exact=REVERSAL")

    assert decisions.status_code == 200
    assert "bot" in decisions.content.decode()
    assert audit.status_code == 200
    assert len(audit.context["cl"].result_list) == 1


# --- exactly the group's permissions, and nobody else ---------------------------------------


def test_a_moderator_sees_the_queue_and_the_logs_and_nothing_else(mod_client: Client) -> None:
    index = mod_client.get("/admin/")

    assert index.status_code == 200
    models = {model["object_name"] for app in index.context["app_list"] for model in app["models"]}
    assert models == {"ReviewItem", "ScoreUpdate", "ModerationDecision"}
    for url in ("/admin/accounts/user/", "/admin/scoring/action/", "/admin/auth/group/"):
        assert mod_client.get(url).status_code == 403


def test_a_moderator_cannot_edit_or_delete_the_audit_log(
    mod_client: Client, queue: dict[str, ScoreUpdate]
) -> None:
    update = queue["plain"]

    assert mod_client.get(f"/admin/scoring/scoreupdate/{update.pk}/change/").status_code == 200
    assert mod_client.post(f"/admin/scoring/scoreupdate/{update.pk}/delete/").status_code == 403
    assert mod_client.get("/admin/scoring/reviewitem/add/").status_code == 403
    assert mod_client.post(f"{QUEUE_URL}{queue['held'].pk}/delete/").status_code == 403


def test_a_player_is_sent_to_the_login_page(
    make_user: Callable[..., User], queue: dict[str, ScoreUpdate]
) -> None:
    client = logged_in(make_user(username="plain"))

    for response in (
        client.get(QUEUE_URL),
        client.get(change_url(queue["held"])),
        client.post(decide_url(queue["held"]), {"decision": "approve"}),
    ):
        assert response.status_code == 302
        assert response["Location"].startswith("/admin/login/")
    queue["held"].refresh_from_db()
    assert queue["held"].status == ScoreStatus.HELD


@pytest.mark.parametrize("who", ["moderator-without-group", "player-in-group"])
def test_staff_without_the_groups_permissions_cannot_see_or_act(
    make_moderator: Callable[..., User],
    make_user: Callable[..., User],
    queue: dict[str, ScoreUpdate],
    who: str,
) -> None:
    if who == "moderator-without-group":
        user = make_moderator(username="ungrouped")
        user.groups.clear()
        expected = 403
    else:  # not staff: the admin lets them in nowhere
        user = make_user(username="grouped")
        user.groups.add(Group.objects.get(name=MODERATORS_GROUP))
        expected = 302
    client = logged_in(user)
    held = queue["held"]

    assert client.get(QUEUE_URL).status_code == expected
    assert client.get(change_url(held)).status_code == expected
    assert client.post(decide_url(held), {"decision": "approve"}).status_code == expected
    assert (
        client.post(QUEUE_URL, {"action": "approve_selected", "_selected_action": [held.pk]})
    ).status_code == expected
    held.refresh_from_db()
    assert held.status == ScoreStatus.HELD
    assert not ModerationDecision.objects.exists()


def test_a_moderator_without_the_ban_permission_cannot_ban(
    mod_client: Client, moderator: User, cheater: User, queue: dict[str, ScoreUpdate]
) -> None:
    group = Group.objects.get(name=MODERATORS_GROUP)
    group.permissions.remove(group.permissions.get(codename="ban_player"))

    page = mod_client.get(change_url(queue["held"])).content.decode()
    item = mod_client.post(decide_url(queue["held"]), {"decision": "ban"})
    bulk = mod_client.post(
        QUEUE_URL, {"action": "ban_players", "_selected_action": [queue["held"].pk]}
    )

    assert 'data-testid="ban"' not in page
    assert item.status_code == 403
    assert bulk.status_code == 302
    assert texts(bulk)[-1] == "No action selected."  # no such action for this moderator
    assert User.objects.get(pk=cheater.pk).is_active


def test_an_admin_changing_a_role_in_the_user_admin_moves_group_membership(
    make_user: Callable[..., User], moderators_group: None
) -> None:
    admin = logged_in(make_user(role=Role.ADMIN, username="root"))
    user = make_user(username="promoted")
    form = admin.get(f"/admin/accounts/user/{user.pk}/change/").context["adminform"].form
    data = {
        name: value
        for name, value in form.initial.items()
        if value is not None and name not in ("groups", "user_permissions", "password")
    }
    data.update(role=Role.MODERATOR, avatar="", country="")

    response = admin.post(f"/admin/accounts/user/{user.pk}/change/", data)

    assert response.status_code == 302, response.content[:2000]
    user.refresh_from_db()
    assert user.role == Role.MODERATOR
    assert list(user.groups.values_list("name", flat=True)) == [MODERATORS_GROUP]
