from django.urls import path

from scoring.api import views

urlpatterns = [
    path("actions/complete", views.ActionCompleteView.as_view(), name="actions-complete"),
    path("scores/update", views.ScoreUpdateView.as_view(), name="scores-update"),
    path("users/me/history", views.ScoreHistoryView.as_view(), name="users-me-history"),
]
