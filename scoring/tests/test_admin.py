"""The admin shows the catalog, game servers, tokens and the audit log; the log and tokens
are read-only there."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client

from accounts.models import Role, User
from scoring.tests.fixtures import GameServerKey, Player

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client_for(make_user: Callable[..., User]) -> Client:
    client = Client()
    client.force_login(make_user(role=Role.ADMIN))
    return client


@pytest.mark.parametrize("model", ["action", "gameserver", "actiontoken", "scoreupdate"])
def test_every_scoring_list_renders(
    admin_client_for: Client, player: Player, game_server: GameServerKey, model: str
) -> None:
    player.score_action(game_server)

    response = admin_client_for.get(f"/admin/scoring/{model}/")

    assert response.status_code == 200


@pytest.mark.parametrize("model", ["actiontoken", "scoreupdate", "gameserver"])
def test_the_service_owned_records_cannot_be_added_by_hand(
    admin_client_for: Client, model: str
) -> None:
    assert admin_client_for.get(f"/admin/scoring/{model}/add/").status_code == 403


def test_an_audit_row_cannot_be_deleted(
    admin_client_for: Client, player: Player, game_server: GameServerKey
) -> None:
    from scoring.models import ScoreUpdate

    player.score_action(game_server)
    update: Any = ScoreUpdate.objects.get()

    response = admin_client_for.post(f"/admin/scoring/scoreupdate/{update.pk}/delete/")

    assert response.status_code == 403
    assert ScoreUpdate.objects.filter(pk=update.pk).exists()
