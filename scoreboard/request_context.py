"""The id of the request being served, visible to logs and error bodies in the same context,
and the other facts about a request that its log line carries."""

import logging
from contextvars import ContextVar

from django.http import HttpRequest
from django.urls import Resolver404, resolve
from django.utils.functional import SimpleLazyObject, empty

UNMATCHED_ROUTE = "unmatched"

_request_id: ContextVar[str | None] = ContextVar("request_id", default=None)


def current_request_id() -> str | None:
    return _request_id.get()


def bind_request_id(request_id: str) -> object:
    return _request_id.set(request_id)


def unbind_request_id(token: object) -> None:
    _request_id.reset(token)  # type: ignore[arg-type]


class RequestIdLogFilter(logging.Filter):
    """Adds `request_id` to every log record (set by the logging call, or the current one)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = current_request_id() or "-"
        return True


def request_route(request: HttpRequest) -> str:
    """The URL pattern of the request (`api/v1/users/me`), never the raw path, so logs and
    metrics group by endpoint; `unmatched` when no pattern matches.

    A request answered before URL resolution (a rate limit, an oversized body) is resolved
    here, so it still counts against its endpoint.
    """
    match = getattr(request, "resolver_match", None)
    if match is None:
        try:
            match = resolve(request.path_info, getattr(request, "urlconf", None))
        except Resolver404:
            return UNMATCHED_ROUTE
    return match.route or UNMATCHED_ROUTE


def request_user_id(request: HttpRequest) -> str | None:
    """The authenticated user's id, if the request authenticated one.

    DRF sets `request.user` on the Django request when a view authenticates. A user that
    nothing asked for is left unevaluated: resolving Django's lazy session user here would
    cost a query on requests that never needed it.
    """
    user = request.__dict__.get("user")
    if isinstance(user, SimpleLazyObject) and user._wrapped is empty:  # type: ignore[attr-defined]
        return None
    if user is None or not getattr(user, "is_authenticated", False):
        return None
    return str(user.pk)
