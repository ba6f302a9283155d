"""WebSocket routes. A path no consumer serves is refused at the handshake."""

from django.urls import re_path

from realtime.consumers import LeaderboardConsumer, UnknownRouteConsumer

websocket_urlpatterns = [
    re_path(r"^ws/leaderboard/?$", LeaderboardConsumer.as_asgi()),
    re_path(r"", UnknownRouteConsumer.as_asgi()),
]
