from django.contrib import admin

from scoring.models import Action, ActionToken, GameServer, ScoreUpdate


class ReadOnlyAdmin(admin.ModelAdmin):
    """Records that only the service writes: viewable, never added, edited or deleted."""

    def has_add_permission(self, request: object) -> bool:
        return False

    def has_change_permission(self, request: object, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: object, obj: object = None) -> bool:
        return False


@admin.register(Action)
class ActionAdmin(admin.ModelAdmin):
    list_display = (
        "action_type",
        "base_points",
        "is_active",
        "min_duration_seconds",
        "daily_cap_per_user",
    )
    list_filter = ("is_active",)
    search_fields = ("action_type", "description")


@admin.register(GameServer)
class GameServerAdmin(admin.ModelAdmin):
    """Servers are created with `manage.py create_game_server` (the secret is shown once);
    here they can be disabled."""

    list_display = ("name", "key_id", "is_active", "created_at", "last_used_at")
    list_filter = ("is_active",)
    search_fields = ("name", "key_id")
    fields = ("name", "key_id", "is_active", "created_at", "last_used_at")
    readonly_fields = ("key_id", "created_at", "last_used_at")

    def has_add_permission(self, request: object) -> bool:
        return False


@admin.register(ActionToken)
class ActionTokenAdmin(ReadOnlyAdmin):
    list_display = (
        "action_id",
        "user",
        "action_type",
        "points",
        "created_at",
        "used_at",
        "is_valid",
    )
    list_filter = ("is_valid", "action_type")
    search_fields = ("action_id", "user__username")
    list_select_related = ("user",)
    raw_id_fields = ("user",)


@admin.register(ScoreUpdate)
class ScoreUpdateAdmin(ReadOnlyAdmin):
    """The audit log is append-only: readable here, never edited or deleted."""

    list_display = (
        "created_at",
        "user",
        "action_type",
        "score_increment",
        "new_score",
        "new_rank",
        "status",
        "ip_address",
    )
    list_filter = ("status", "action_type")
    search_fields = ("user__username", "action_id", "ip_address")
    list_select_related = ("user",)
    date_hierarchy = "created_at"
