from django.urls import path

from scoring.api import moderation, views

urlpatterns = [
    path("actions/complete", views.ActionCompleteView.as_view(), name="actions-complete"),
    path("scores/update", views.ScoreUpdateView.as_view(), name="scores-update"),
    path("users/me/history", views.ScoreHistoryView.as_view(), name="users-me-history"),
    path("moderation/flags", moderation.FlagListView.as_view(), name="moderation-flags"),
    path(
        "moderation/flags/<uuid:update_id>/approve",
        moderation.FlagApproveView.as_view(),
        name="moderation-flags-approve",
    ),
    path(
        "moderation/flags/<uuid:update_id>/reject",
        moderation.FlagRejectView.as_view(),
        name="moderation-flags-reject",
    ),
]
