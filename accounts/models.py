from __future__ import annotations

import uuid
from typing import Any, ClassVar

from django.contrib.auth.base_user import AbstractBaseUser, BaseUserManager
from django.contrib.auth.models import PermissionsMixin
from django.core.validators import MinLengthValidator, RegexValidator
from django.db import models
from django.db.models import Q
from django.db.models.functions import Lower
from django.utils import timezone

from accounts.countries import validate_country_code

USERNAME_MIN_LENGTH = 3
USERNAME_MAX_LENGTH = 32
USERNAME_PATTERN = r"^[A-Za-z0-9_.-]+\Z"
EMAIL_MAX_LENGTH = 254
AVATAR_MAX_LENGTH = 500


class Role(models.TextChoices):
    USER = "user", "User"
    MODERATOR = "moderator", "Moderator"
    ADMIN = "admin", "Admin"


# The auth group holding the moderators' permissions (created by a scoring migration). The
# role decides membership: every moderator is in it, nobody else (accounts.services).
MODERATORS_GROUP = "Moderators"


def on_leaderboards(prefix: str = "") -> Q:
    """The condition for a user to appear on boards (active, not hidden); `prefix` names the
    relation when filtering another model, e.g. `on_leaderboards("user__")`."""
    return Q(**{f"{prefix}is_active": True, f"{prefix}hide_from_leaderboards": False})


class UserManager(BaseUserManager["User"]):
    use_in_migrations = True

    def get_by_natural_key(self, username: str | None) -> User:
        """Log-in names match case-insensitively, as they are unique that way."""
        return self.get(username__iexact=username)

    def create_user(
        self, username: str, email: str, password: str | None = None, **fields: Any
    ) -> User:
        user = self.model(
            username=self.model.normalize_username(username),
            email=self.normalize_email(email),
            **fields,
        )
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_superuser(
        self, username: str, email: str, password: str | None = None, **fields: Any
    ) -> User:
        fields["role"] = Role.ADMIN
        return self.create_user(username, email, password, **fields)


class User(AbstractBaseUser, PermissionsMixin):
    """A player, moderator or administrator.

    The role is the single source of staff and superuser status: moderators and admins may use
    the Django admin, admins hold every permission, and moderators get theirs from the
    Moderators group, which the role puts them in and takes them out of.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    username = models.CharField(
        max_length=USERNAME_MAX_LENGTH,
        unique=True,
        validators=[
            MinLengthValidator(USERNAME_MIN_LENGTH),
            RegexValidator(
                USERNAME_PATTERN, "Use letters, digits, underscore, dot and hyphen only."
            ),
        ],
    )
    email = models.EmailField(max_length=EMAIL_MAX_LENGTH, unique=True)
    country = models.CharField(
        max_length=2, blank=True, default="", validators=[validate_country_code]
    )
    avatar = models.URLField(max_length=AVATAR_MAX_LENGTH, blank=True, default="")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.USER)
    is_active = models.BooleanField(default=True)
    hide_from_leaderboards = models.BooleanField(default=False)
    # Bumped to rotate the user's score-signing key; the key itself is derived, never stored.
    signing_key_version = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    last_active_at = models.DateTimeField(default=timezone.now)
    # Set when the player erased their account (accounts.services.user_erase): the row stays,
    # without personal data, so the audit log keeps pointing at someone.
    erased_at = models.DateTimeField(null=True, blank=True, editable=False)

    objects: ClassVar[UserManager] = UserManager()

    USERNAME_FIELD = "username"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS = ["email"]

    class Meta:
        constraints = [
            models.UniqueConstraint(Lower("username"), name="accounts_user_username_ci_unique"),
            models.UniqueConstraint(Lower("email"), name="accounts_user_email_ci_unique"),
        ]

    def __str__(self) -> str:
        return self.username

    @property
    def is_on_leaderboards(self) -> bool:
        return self.is_active and not self.hide_from_leaderboards

    # The role decides staff and superuser status; the properties replace the flags that
    # AbstractUser and PermissionsMixin would otherwise store.
    @property
    def is_staff(self) -> bool:
        return self.role in (Role.MODERATOR, Role.ADMIN)

    @property
    def is_superuser(self) -> bool:  # type: ignore[override]
        return self.role == Role.ADMIN
