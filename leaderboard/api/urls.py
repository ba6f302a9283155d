from django.urls import path

from leaderboard.api import views

urlpatterns = [
    path("leaderboard/top", views.TopView.as_view(), name="leaderboard-top"),
    path("leaderboard/around-me", views.AroundMeView.as_view(), name="leaderboard-around-me"),
    path("leaderboard/history", views.HistoryView.as_view(), name="leaderboard-history"),
]
