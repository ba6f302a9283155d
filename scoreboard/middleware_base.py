"""The base of this project's middleware, in a module of its own so that any module (the
metrics, which the rate limits import) can build on it without an import cycle."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponseBase


class BeforeAfterMiddleware:
    """Middleware that works unchanged in sync (WSGI) and async (ASGI) stacks, so an ASGI
    request pays no extra thread hop for it. Subclasses implement `before` (which may answer
    early), `after`, and `cleanup` (always run once the view has answered or raised); one
    whose `before` blocks overrides `abefore` to keep that off the event loop."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self._acall(request)
        early = self.before(request)
        if early is not None:
            return self.after(request, early)
        try:
            response = self.get_response(request)
        finally:
            self.cleanup(request)
        return self.after(request, response)

    async def _acall(self, request: HttpRequest) -> HttpResponseBase:
        early = await self.abefore(request)
        if early is not None:
            return self.after(request, early)
        try:
            response = await self.get_response(request)
        finally:
            self.cleanup(request)
        return self.after(request, response)

    def before(self, request: HttpRequest) -> HttpResponseBase | None:
        return None

    async def abefore(self, request: HttpRequest) -> HttpResponseBase | None:
        return self.before(request)

    def after(self, request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
        return response

    def cleanup(self, request: HttpRequest) -> None:
        return None
