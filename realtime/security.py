"""WebSocket handshake checks that run before any consumer."""

from __future__ import annotations

from typing import Any
from urllib.parse import ParseResult

from channels.security.websocket import OriginValidator
from django.conf import settings


class BrowserOriginValidator(OriginValidator):
    """A browser's Origin must be one of ALLOWED_HOSTS (against cross-site WebSocket
    hijacking); native clients send no Origin and pass on to authentication."""

    def valid_origin(self, parsed_origin: ParseResult | None) -> bool:
        return parsed_origin is None or bool(self.validate_origin(parsed_origin))


def browser_origin_validated(application: Any) -> BrowserOriginValidator:
    return BrowserOriginValidator(application, list(settings.ALLOWED_HOSTS))
