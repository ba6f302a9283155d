"""WebSocket handshake checks that run before any consumer."""

from __future__ import annotations

from typing import Any
from urllib.parse import ParseResult

from channels.security.websocket import OriginValidator
from django.conf import settings


class BrowserOriginValidator(OriginValidator):
    """A browser's Origin must be one of ALLOWED_HOSTS or CORS_ALLOWED_ORIGINS (against
    cross-site WebSocket hijacking); native clients send no Origin and pass on to
    authentication. The lists are read at each handshake, as the settings say now."""

    def __init__(self, application: Any) -> None:
        super().__init__(application, allowed_origins=[])

    def valid_origin(self, parsed_origin: ParseResult | None) -> bool:
        if parsed_origin is None:
            return True
        allowed = [*settings.ALLOWED_HOSTS, *settings.CORS_ALLOWED_ORIGINS]
        return any(
            pattern == "*" or self.match_allowed_origin(parsed_origin, pattern)
            for pattern in allowed
        )


def browser_origin_validated(application: Any) -> BrowserOriginValidator:
    return BrowserOriginValidator(application)
