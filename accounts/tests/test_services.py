"""accounts.services, accounts.selectors and the User model, without HTTP."""

from __future__ import annotations

from typing import Any

import pytest
from django.conf import settings
from django.db import IntegrityError, transaction

from accounts import services
from accounts.models import Role, User
from accounts.selectors import user_signing_key
from accounts.services import ROLE_PERMISSIONS, user_register, user_update_profile
from accounts.tests.helpers import HEX_KEY
from conftest import TEST_PASSWORD
from scoreboard.errors import InvalidInput

pytestmark = pytest.mark.django_db


# --- user_signing_key ----------------------------------------------------------------------


def test_signing_key_is_64_hex(user: User) -> None:
    assert HEX_KEY.match(user_signing_key(user))


def test_signing_key_is_deterministic(user: User) -> None:
    # given the same user loaded twice
    reloaded = User.objects.get(pk=user.pk)

    # then both give the same key (it is derived, not random)
    assert user_signing_key(user) == user_signing_key(reloaded)


def test_signing_key_differs_between_users(make_user: Any) -> None:
    # given two users
    first, second = make_user(), make_user()

    # then their keys differ
    assert user_signing_key(first) != user_signing_key(second)


def test_signing_key_changes_with_the_version(user: User) -> None:
    # given the key at version 1
    before = user_signing_key(user)

    # when the version is bumped
    user.signing_key_version += 1

    # then the key changes
    assert user_signing_key(user) != before


def test_signing_key_changes_with_the_secret(user: User) -> None:
    # a different server secret gives a different key; the configured one gives the default
    assert user_signing_key(user, secret="another-secret-key") != user_signing_key(user)
    assert user_signing_key(user, secret=settings.SECRET_KEY) == user_signing_key(user)


def test_rotate_bumps_the_stored_version_and_returns_the_new_key(user: User) -> None:
    # when the key is rotated
    key = services.user_rotate_signing_key(user=user)

    # then the stored version moved on and the returned key is the new derived key
    assert User.objects.values_list("signing_key_version", flat=True).get(pk=user.pk) == 2
    assert key == user_signing_key(User.objects.get(pk=user.pk))


# --- user_register -------------------------------------------------------------------------


def test_register_creates_a_player() -> None:
    user = user_register(
        username="NewPlayer_1", email="new@Example.COM", password=TEST_PASSWORD, country="nz"
    )

    stored = User.objects.get(pk=user.pk)
    assert (stored.username, stored.email, stored.country, stored.role) == (
        "NewPlayer_1",
        "new@example.com",
        "NZ",
        "user",
    )
    assert stored.check_password(TEST_PASSWORD)


def test_register_duplicate_username_is_invalid_input(user: User) -> None:
    # given ProGamer123 exists
    # when the same name registers in another case
    with pytest.raises(InvalidInput) as caught:
        user_register(username="PROGAMER123", email="new@example.com", password=TEST_PASSWORD)

    # then it is a domain error naming the field
    assert caught.value.details == {"username": ["A user with that username already exists."]}
    assert User.objects.count() == 1


def racing_check_unique(competitor: dict[str, str]) -> Any:
    """`_check_unique` that lets a competing registration land right after its first check,
    i.e. between the service's uniqueness check and its INSERT (a lost race)."""
    real_check = services._check_unique
    calls = 0

    def check(**names: Any) -> None:
        nonlocal calls
        calls += 1
        real_check(**names)
        if calls == 1:
            User.objects.create_user(password=TEST_PASSWORD, **competitor)

    return check


@pytest.mark.parametrize(
    ("competitor", "details"),
    [
        pytest.param(
            {"username": "racer", "email": "first@example.com"},
            {"username": ["A user with that username already exists."]},
            id="same-username-other-case",
        ),
        pytest.param(
            {"username": "first_one", "email": "RACER@example.com"},
            {"email": ["A user with that email already exists."]},
            id="same-email-other-case",
        ),
    ],
)
def test_register_that_loses_a_race_is_invalid_input_not_integrity_error(
    monkeypatch: pytest.MonkeyPatch, competitor: dict[str, str], details: dict[str, list[str]]
) -> None:
    # given a concurrent registration that inserts the same name or email just after our check
    monkeypatch.setattr(services, "_check_unique", racing_check_unique(competitor))

    # when the registration's INSERT hits the unique constraint
    with pytest.raises(InvalidInput) as caught:
        user_register(username="RACER", email="racer@example.com", password=TEST_PASSWORD)

    # then it is reported as the domain error, and only the winner exists
    assert caught.value.details == details
    assert list(User.objects.values_list("username", flat=True)) == [competitor["username"]]


def test_register_refuses_an_invalid_country_before_writing() -> None:
    with pytest.raises(InvalidInput) as caught:
        user_register(
            username="NewPlayer_1", email="n@example.com", password=TEST_PASSWORD, country="XX"
        )

    assert caught.value.details == {"country": ["'XX' is not an ISO 3166-1 alpha-2 country code."]}
    assert User.objects.count() == 0


# --- user_update_profile -------------------------------------------------------------------


def test_update_profile_that_fails_leaves_the_instance_as_stored(user: User) -> None:
    # when an update with an invalid country is refused
    with pytest.raises(InvalidInput):
        user_update_profile(user=user, country="ZZ", avatar="https://cdn.example.com/a.png")

    # then the in-memory user is back to the stored values, and the row is unchanged
    assert (user.country, user.avatar) == ("US", "")
    stored = User.objects.get(pk=user.pk)
    assert (stored.country, stored.avatar) == ("US", "")


def test_update_profile_with_nothing_to_change_writes_nothing(
    user: User, django_assert_num_queries: Any
) -> None:
    with django_assert_num_queries(0):
        user_update_profile(user=user)


# --- roles ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("role", "permissions"),
    [
        (Role.USER, ("score.update", "leaderboard.view")),
        (Role.MODERATOR, ("score.update", "leaderboard.view", "moderation.review")),
        (
            Role.ADMIN,
            ("score.update", "leaderboard.view", "moderation.review", "users.manage"),
        ),
    ],
)
def test_role_permissions(role: Role, permissions: tuple[str, ...]) -> None:
    assert ROLE_PERMISSIONS[role] == permissions


def test_every_role_has_permissions() -> None:
    assert set(ROLE_PERMISSIONS) == set(Role.values)


@pytest.mark.parametrize(
    ("role", "is_staff", "is_superuser"),
    [(Role.USER, False, False), (Role.MODERATOR, True, False), (Role.ADMIN, True, True)],
)
def test_staff_and_superuser_follow_the_role(
    make_user: Any, role: Role, is_staff: bool, is_superuser: bool
) -> None:
    user = make_user(role=role)

    assert (user.is_staff, user.is_superuser) == (is_staff, is_superuser)


def test_create_superuser_is_an_admin() -> None:
    # when a superuser is created, even asking for another role
    admin = User.objects.create_superuser(
        "root_1", "root@example.com", TEST_PASSWORD, role=Role.USER
    )

    # then it is an admin, hence staff and superuser
    stored = User.objects.get(pk=admin.pk)
    assert (stored.role, stored.is_staff, stored.is_superuser) == ("admin", True, True)
    assert stored.check_password(TEST_PASSWORD)


# --- the manager and the database constraints ----------------------------------------------


@pytest.mark.parametrize("name", ["ProGamer123", "progamer123", "PROGAMER123"])
def test_get_by_natural_key_is_case_insensitive(user: User, name: str) -> None:
    assert User.objects.get_by_natural_key(name) == user


def test_get_by_natural_key_of_an_unknown_name_raises(user: User) -> None:
    with pytest.raises(User.DoesNotExist):
        User.objects.get_by_natural_key("nobody")


def test_database_refuses_a_case_variant_username(user: User) -> None:
    # given ProGamer123 exists
    # when a case variant is inserted bypassing the service's checks
    with pytest.raises(IntegrityError), transaction.atomic():
        User.objects.create(username="progamer123", email="other@example.com")

    # then only the first exists
    assert User.objects.count() == 1


def test_database_refuses_a_case_variant_email(user: User) -> None:
    # given pro@example.com exists
    # when a case variant is inserted bypassing the service's checks
    with pytest.raises(IntegrityError), transaction.atomic():
        User.objects.create(username="another_1", email="PRO@EXAMPLE.COM")

    # then only the first exists
    assert User.objects.count() == 1
