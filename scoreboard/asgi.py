"""The one ASGI application: HTTP (Django) and WebSocket (Channels) routes.

Run it with `uvicorn scoreboard.asgi:application` (see the README and docker/).
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "scoreboard.settings")

# Django must be set up before anything imports models (the consumers do).
django_http = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.conf import settings  # noqa: E402

from realtime.routing import websocket_urlpatterns  # noqa: E402
from realtime.security import browser_origin_validated  # noqa: E402
from scoreboard.middleware import RequestBodyLimit  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": RequestBodyLimit(django_http, max_bytes=settings.MAX_REQUEST_BODY_BYTES),
        "websocket": browser_origin_validated(URLRouter(websocket_urlpatterns)),
    }
)
