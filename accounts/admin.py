from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.forms import AdminUserCreationForm, UserChangeForm
from django.http import HttpRequest

from accounts.models import AVATAR_MAX_LENGTH, User
from accounts.services import user_role_groups_sync


class UserCreationForm(AdminUserCreationForm):
    class Meta:
        model = User
        fields = ("username", "email")


class UserEditForm(UserChangeForm):
    avatar = forms.URLField(max_length=AVATAR_MAX_LENGTH, required=False, assume_scheme="https")

    class Meta:
        model = User
        fields = "__all__"


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    """Users by role; staff and superuser status, and membership of the Moderators group,
    follow the role."""

    form = UserEditForm
    add_form = UserCreationForm
    list_display = ("username", "email", "country", "role", "is_active", "created_at")
    list_filter = ("role", "is_active", "hide_from_leaderboards", "country")
    search_fields = ("username", "email", "id")
    ordering = ("-created_at",)
    readonly_fields = ("id", "created_at", "last_active_at", "signing_key_version", "erased_at")
    filter_horizontal = ("groups", "user_permissions")
    fieldsets = (
        (None, {"fields": ("id", "username", "email", "password")}),
        ("Profile", {"fields": ("country", "avatar", "hide_from_leaderboards")}),
        ("Access", {"fields": ("role", "is_active", "groups", "user_permissions")}),
        (
            "Activity",
            {"fields": ("created_at", "last_active_at", "signing_key_version", "erased_at")},
        ),
    )
    add_fieldsets = (
        (None, {"classes": ("wide",), "fields": ("username", "email", "password1", "password2")}),
    )

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        # The form's `groups` are saved after the user: put the role's group back in step.
        super().save_related(request, form, formsets, change)
        user_role_groups_sync(user=form.instance)
