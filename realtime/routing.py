"""WebSocket routes. A path no consumer serves is refused at the handshake."""

from django.urls import re_path

from realtime.consumers import UnknownRouteConsumer

websocket_urlpatterns = [
    re_path(r"", UnknownRouteConsumer.as_asgi()),
]
