"""The catalog, game servers, tokens and the audit log (read-only), and the moderators'
queue: flagged and held updates, decided through `scoring.moderation` like the API."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from accounts.models import Role, User
from leaderboard.selectors import all_time_ranks
from scoreboard.errors import ApplicationError
from scoring import moderation
from scoring.anomaly import ReasonCode
from scoring.models import (
    REVIEW_REASON_MAX_LENGTH,
    REVIEW_STATUSES,
    Action,
    ActionToken,
    GameServer,
    ModerationDecision,
    ReviewDecision,
    ReviewItem,
    ScoreStatus,
    ScoreUpdate,
)
from scoring.periods import Period


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
        "review_decision",
        "ip_address",
    )
    list_filter = ("status", "review_decision", "action_type")
    search_fields = ("user__username", "=user__id", "action_id", "ip_address")
    list_select_related = ("user",)
    date_hierarchy = "created_at"


@admin.register(ModerationDecision)
class ModerationDecisionAdmin(ReadOnlyAdmin):
    """The moderators' decisions: the audit log of the moderation path."""

    list_display = (
        "created_at",
        "action",
        "moderator",
        "user",
        "previous_status",
        "new_status",
        "points",
        "reason",
    )
    list_filter = ("action", ("created_at", admin.DateFieldListFilter))
    search_fields = (
        "user__username",
        "=user__id",
        "moderator__username",
        "score_update__action_id",
    )
    list_select_related = ("user", "moderator")
    raw_id_fields = ("user", "moderator", "score_update")


# --- the moderation queue -------------------------------------------------------------------


class ModerationActionForm(helpers.ActionForm):
    """The list's action bar, with the reason that approve, reject and ban record."""

    reason = forms.CharField(
        required=False,
        max_length=REVIEW_REASON_MAX_LENGTH,
        label="Reason:",
        widget=forms.TextInput(attrs={"size": 40, "placeholder": "kept in the audit log"}),
    )


class DecisionForm(forms.Form):
    decision = forms.ChoiceField(
        choices=[("approve", "approve"), ("reject", "reject"), ("ban", "ban")]
    )
    review_reason = forms.CharField(required=False, max_length=REVIEW_REASON_MAX_LENGTH)


class QueueFilter(admin.SimpleListFilter):
    """Awaiting review by default; decided items and everything on request."""

    title = "queue"
    parameter_name = "queue"
    DEFAULT = "pending"

    def lookups(self, request: Any, model_admin: Any) -> list[tuple[str, str]]:
        return [("pending", "Awaiting review"), ("decided", "Decided"), ("all", "All")]

    def choices(self, changelist: Any) -> Iterator[Any]:
        for lookup, title in self.lookup_choices:
            yield {
                "selected": (self.value() or self.DEFAULT) == lookup,
                "query_string": changelist.get_query_string({self.parameter_name: lookup}),
                "display": title,
            }

    def queryset(self, request: Any, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value() or self.DEFAULT
        if value == "pending":
            return queryset.filter(status__in=REVIEW_STATUSES)
        if value == "decided":
            return queryset.filter(reviewed_at__isnull=False)
        return queryset


class ReasonFilter(admin.SimpleListFilter):
    title = "reason"
    parameter_name = "reason"

    def lookups(self, request: Any, model_admin: Any) -> list[tuple[str, str]]:
        return [(code, code) for code in ReasonCode.values]

    def queryset(self, request: Any, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        return moderation.with_reason(queryset, value) if value else queryset


Decide = Callable[..., Any]


@admin.register(ReviewItem)
class ReviewItemAdmin(admin.ModelAdmin):
    """Flagged and held score updates, with the player's totals and recent history beside
    each, decided one by one or in bulk. Every decision goes through scoring.moderation."""

    action_form = ModerationActionForm
    actions = ("approve_selected", "reject_selected", "ban_players")
    list_display = (
        "created_at",
        "player",
        "action_type",
        "score_increment",
        "status",
        "reasons",
        "ip_address",
        "player_total",
        "review_decision",
        "reviewed_by",
    )
    list_display_links = ("created_at",)
    list_filter = (
        QueueFilter,
        "status",
        ReasonFilter,
        "action_type",
        ("created_at", admin.DateFieldListFilter),
        "review_decision",
    )
    search_fields = ("user__username", "=user__id", "action_id")
    list_select_related = ("user", "reviewed_by")
    ordering = ("-created_at", "-id")
    show_facets = admin.ShowFacets.NEVER
    fieldsets = (
        (
            "Update",
            {
                "fields": (
                    "id",
                    "player",
                    "action_type",
                    "action_id",
                    "score_increment",
                    "status",
                    "reasons",
                    "risk_reasons",
                    "created_at",
                    "client_timestamp",
                    "ip_address",
                    "user_agent",
                    "verified",
                )
            },
        ),
        (
            "Review",
            {
                "fields": (
                    "review_decision",
                    "reviewed_by",
                    "reviewed_at",
                    "review_reason",
                    "decisions",
                )
            },
        ),
        ("Player", {"fields": ("player_panel",)}),
        ("Recent history", {"fields": ("history_panel",)}),
    )
    readonly_fields = (
        *("id", "player", "action_type", "action_id", "score_increment", "status", "reasons"),
        *("risk_reasons", "created_at", "client_timestamp", "ip_address", "user_agent"),
        *("verified", "review_decision", "reviewed_by", "reviewed_at", "review_reason"),
        *("decisions", "player_panel", "history_panel"),
    )

    # --- permissions: the queue's own (the Moderators group); never added or deleted here ---

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_ban_permission(self, request: HttpRequest) -> bool:
        return moderation.can_moderate(request.user, moderation.BAN_PERMISSION)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        return moderation.with_player_score(
            super().get_queryset(request).filter(moderation.reviewed_or_in_review())
        )

    # --- columns and panels ---------------------------------------------------------------

    @admin.display(description="player", ordering="user__username")
    def player(self, obj: ScoreUpdate) -> str:
        suffix = "" if obj.user.is_active else " (banned)"
        return f"{obj.user.username}{suffix}"

    @admin.display(description="reasons")
    def reasons(self, obj: ScoreUpdate) -> str:
        return ", ".join(moderation.reason_codes(obj.risk_reasons)) or "-"

    @admin.display(description="player's total", ordering="player_score")
    def player_total(self, obj: Any) -> int:
        return int(obj.player_score or 0)

    @admin.display(description="decisions")
    def decisions(self, obj: ScoreUpdate) -> str:
        rows = obj.decisions.select_related("moderator").order_by("created_at")
        if not rows:
            return "-"
        return format_html(
            "<ul>{}</ul>",
            format_html_join(
                "",
                "<li>{} by {} at {}: {} → {} ({} points){}</li>",
                (
                    (
                        row.get_action_display(),
                        row.moderator or "an erased account",
                        row.created_at.strftime("%Y-%m-%d %H:%M:%S"),
                        row.previous_status,
                        row.new_status,
                        f"{row.points:+d}",
                        f" — {row.reason}" if row.reason else "",
                    )
                    for row in rows
                ),
            ),
        )

    @admin.display(description="player")
    def player_panel(self, obj: ScoreUpdate) -> str:
        user = obj.user
        totals = moderation.user_current_totals(user_id=user.pk, board=obj.board)
        [rank] = all_time_ranks(user=user, scores=[totals[Period.ALL_TIME]], board=obj.board)
        return format_html(
            '<table data-testid="player-panel"><tbody>'
            "<tr><th>username</th><td>{}</td></tr>"
            "<tr><th>user id</th><td>{}</td></tr>"
            "<tr><th>country</th><td>{}</td></tr>"
            "<tr><th>active</th><td>{}</td></tr>"
            '<tr><th>all time</th><td data-testid="total-ALL_TIME">{}</td></tr>'
            "<tr><th>today (UTC)</th><td>{}</td></tr>"
            "<tr><th>this week</th><td>{}</td></tr>"
            "<tr><th>this month</th><td>{}</td></tr>"
            "<tr><th>all-time rank</th><td>{}</td></tr>"
            "</tbody></table>",
            user.username,
            user.pk,
            user.country or "-",
            "yes" if user.is_active else "no (banned)",
            totals[Period.ALL_TIME],
            totals[Period.DAILY],
            totals[Period.WEEKLY],
            totals[Period.MONTHLY],
            rank if rank is not None else "-",
        )

    @admin.display(description="recent history")
    def history_panel(self, obj: ScoreUpdate) -> str:
        rows = moderation.user_recent_updates(user_id=obj.user_id)
        return format_html(
            '<table data-testid="history-panel"><thead><tr><th>when</th><th>action</th>'
            "<th>points</th><th>score</th><th>status</th><th>reasons</th><th>IP</th>"
            "<th>decision</th></tr></thead><tbody>{}</tbody></table>",
            format_html_join(
                "",
                "<tr{}><td>{}</td><td>{}</td><td>{}</td><td>{} → {}</td><td>{}</td>"
                "<td>{}</td><td>{}</td><td>{}</td></tr>",
                (
                    (
                        mark_safe(' class="selected" data-testid="this-update"')
                        if row.pk == obj.pk
                        else "",
                        row.created_at.strftime("%Y-%m-%d %H:%M:%S"),
                        row.action_type,
                        f"{row.score_increment:+d}",
                        row.previous_score,
                        row.new_score,
                        row.status,
                        ", ".join(moderation.reason_codes(row.risk_reasons)) or "-",
                        row.ip_address or "-",
                        row.review_decision or "-",
                    )
                    for row in rows
                ),
            ),
        )

    # --- single decisions, from the change page -------------------------------------------

    def get_urls(self) -> list[URLPattern]:
        info = self.opts.app_label, self.opts.model_name
        return [
            path(
                "<path:object_id>/decide/",
                self.admin_site.admin_view(self.decide_view),
                name="{}_{}_decide".format(*info),
            ),
            *super().get_urls(),
        ]

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        if request.method == "POST":
            # Nothing here is edited: decisions are posted to the decide view.
            return HttpResponseNotAllowed(["GET"])
        obj = self.get_object(request, object_id)
        context = {
            **(extra_context or {}),
            "show_save": False,
            "show_save_and_continue": False,
            "show_save_and_add_another": False,
            "show_delete": False,
        }
        if obj is not None and self.has_change_permission(request, obj):
            context.update(
                decide_url=reverse(
                    f"admin:{self.opts.app_label}_{self.opts.model_name}_decide",
                    args=[obj.pk],
                    current_app=self.admin_site.name,
                ),
                can_approve=obj.status in REVIEW_STATUSES,
                can_reject=obj.status in (*REVIEW_STATUSES, ScoreStatus.COUNTED),
                can_ban=self.has_ban_permission(request)
                and obj.user.is_active
                and obj.user.role == Role.USER,
            )
        return super().change_view(request, object_id, form_url, context)

    def decide_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """POST from the change page: approve, reject or ban, with an optional reason."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        obj = self.get_object(request, object_id)
        if obj is None or not self.has_view_permission(request, obj):
            raise PermissionDenied
        change_url = reverse(
            f"admin:{self.opts.app_label}_{self.opts.model_name}_change",
            args=[obj.pk],
            current_app=self.admin_site.name,
        )
        form = DecisionForm(request.POST)
        if not form.is_valid():
            messages.error(request, "Choose approve, reject or ban; a reason has 500 characters.")
            return HttpResponseRedirect(change_url)
        decision, reason = form.cleaned_data["decision"], form.cleaned_data["review_reason"]
        if decision == "ban":
            if not self.has_ban_permission(request):
                raise PermissionDenied
        elif not self.has_change_permission(request, obj):
            raise PermissionDenied
        try:
            text = _decide_one(decision, obj, moderator=_moderator(request), reason=reason)
        except ApplicationError as error:
            messages.error(request, str(error.detail))
        else:
            messages.success(request, text)
        return HttpResponseRedirect(change_url)

    # --- bulk decisions, from the list ------------------------------------------------------

    @admin.action(description="Approve selected updates", permissions=["change"])
    def approve_selected(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        self._decide_all(request, queryset, moderation.score_update_approve, "approved")

    @admin.action(description="Reject selected updates", permissions=["change"])
    def reject_selected(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        self._decide_all(request, queryset, moderation.score_update_reject, "rejected")

    @admin.action(description="Ban the players of selected updates", permissions=["ban"])
    def ban_players(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        banned, already, refused = 0, 0, []
        for user_id in sorted(set(queryset.values_list("user_id", flat=True))):
            try:
                outcome = moderation.user_ban(
                    user_id=user_id,
                    moderator=_moderator(request),
                    reason=_action_reason(request),
                )
            except ApplicationError as error:
                refused.append(str(error.detail))
                continue
            banned, already = banned + outcome.changed, already + (not outcome.changed)
        _report(request, f"{banned} banned", already, "already banned", refused)

    def _decide_all(
        self, request: HttpRequest, queryset: QuerySet[Any], service: Decide, verb: str
    ) -> None:
        done, already, refused = 0, 0, []
        for update_id in list(queryset.values_list("pk", flat=True)):
            try:
                outcome = service(
                    update_id=update_id,
                    moderator=_moderator(request),
                    reason=_action_reason(request),
                )
            except ApplicationError as error:
                refused.append(str(error.detail))
                continue
            done, already = done + outcome.changed, already + (not outcome.changed)
        _report(request, f"{done} {verb}", already, f"already {verb}", refused)


def _moderator(request: HttpRequest) -> User:
    if not isinstance(request.user, User):  # admin views let only staff in
        raise PermissionDenied
    return request.user


def _action_reason(request: HttpRequest) -> str:
    # The action form was validated by the changelist before the action ran.
    return request.POST.get("reason", "")[:REVIEW_REASON_MAX_LENGTH]


def _decide_one(decision: str, obj: ScoreUpdate, *, moderator: User, reason: str) -> str:
    if decision == "ban":
        ban = moderation.user_ban(user_id=obj.user_id, moderator=moderator, reason=reason)
        name = ban.user.username
        return f"Banned {name}." if ban.changed else f"Already banned: {name}."
    service: Decide = (
        moderation.score_update_approve if decision == "approve" else moderation.score_update_reject
    )
    return _outcome_text(service(update_id=obj.pk, moderator=moderator, reason=reason))


def _outcome_text(outcome: moderation.ReviewOutcome) -> str:
    update = outcome.score_update
    if not outcome.changed:
        return f"Already {update.review_decision.lower()}; nothing changed."
    if update.review_decision == ReviewDecision.APPROVED:
        return (
            f"Approved: {update.score_increment:+d} points counted for {update.user}."
            if outcome.decision.points
            else "Approved: the flag is cleared."
        )
    if outcome.reversal is not None:
        return f"Rejected: {outcome.reversal.score_increment:+d} points reverted."
    return "Rejected: the held update is discarded."


def _report(
    request: HttpRequest, done: str, already: int, already_text: str, refused: list[str]
) -> None:
    parts = [done] + ([f"{already} {already_text}"] if already else [])
    if refused:
        parts.append(f"{len(refused)} refused ({refused[0]})")
        messages.warning(request, "; ".join(parts) + ".")
    else:
        messages.success(request, "; ".join(parts) + ".")
