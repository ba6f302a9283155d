"""`create_game_server` and `load_actions`."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from scoreboard.encryption import decrypt_text
from scoring.models import Action, GameServer
from scoring.services import DEFAULT_ACTIONS

pytestmark = pytest.mark.django_db


def run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_create_game_server_prints_its_key_id_and_secret_once() -> None:
    printed = json.loads(run("create_game_server", "arena-eu-1"))

    assert set(printed) == {"keyId", "secret"}
    server = GameServer.objects.get()
    assert (server.name, server.key_id, server.is_active) == ("arena-eu-1", printed["keyId"], True)
    assert len(printed["secret"]) == 64
    assert printed["secret"] not in server.secret_encrypted
    assert decrypt_text(server.secret_encrypted) == printed["secret"]


def test_create_game_server_refuses_a_taken_name() -> None:
    run("create_game_server", "arena-eu-1")

    with pytest.raises(CommandError, match="already exists"):
        run("create_game_server", "arena-eu-1")
    assert GameServer.objects.count() == 1


def test_load_actions_installs_the_catalog() -> None:
    output = run("load_actions")

    assert {a.action_type: a.base_points for a in Action.objects.all()} == {
        action_type: points for action_type, points, *_ in DEFAULT_ACTIONS
    }
    assert output.endswith(f"{len(DEFAULT_ACTIONS)} created, 0 already present\n")


def test_load_actions_again_changes_nothing_an_operator_set() -> None:
    run("load_actions")
    Action.objects.filter(action_type="WIN_GAME").update(base_points=250, is_active=False)

    output = run("load_actions")

    win = Action.objects.get(action_type="WIN_GAME")
    assert (win.base_points, win.is_active) == (250, False)
    assert Action.objects.count() == len(DEFAULT_ACTIONS)
    assert output == f"0 created, {len(DEFAULT_ACTIONS)} already present\n"
