from django.urls import path

from realtime.api import views

urlpatterns = [
    path("realtime/ticket", views.TicketView.as_view(), name="realtime-ticket"),
    path("leaderboard/stream", views.LeaderboardStreamView.as_view(), name="leaderboard-stream"),
]
