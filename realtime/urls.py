from django.urls import path

from realtime import views

urlpatterns = [
    path("live/", views.live_board, name="live-board"),
]
