from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command

from accounts.management.commands.seed_demo import DEMO_PLAYERS
from accounts.models import User

pytestmark = pytest.mark.django_db


def test_seed_demo_creates_players_who_can_log_in_with_the_printed_password() -> None:
    output = StringIO()

    call_command("seed_demo", stdout=output)

    lines = output.getvalue().splitlines()
    assert len(lines) == len(DEMO_PLAYERS)
    username, password = lines[0].split()[2], lines[0].split()[-1]
    assert User.objects.get(username=username).check_password(password)
    assert User.objects.count() == len(DEMO_PLAYERS)


def test_seed_demo_is_idempotent() -> None:
    call_command("seed_demo", stdout=StringIO())
    output = StringIO()

    call_command("seed_demo", stdout=output)

    assert output.getvalue().strip() == "demo players already present"
    assert User.objects.count() == len(DEMO_PLAYERS)
