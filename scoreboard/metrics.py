"""Prometheus metrics (docs/operations.md, "Metrics"): every series the service exports, the
small helpers that record them, the HTTP middleware and the `/metrics` view.

Worker processes of one node share their series through files in `PROMETHEUS_MULTIPROC_DIR`
(prometheus_client's multi-process mode, which that variable switches on before the first
metric is made); without it, `/metrics` serves this process's default registry.
"""

from __future__ import annotations

import functools
import hmac
import os
import re
import time
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import connections
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBase
from django.views.decorators.http import require_safe
from prometheus_client import (
    CONTENT_TYPE_PLAIN_0_0_4,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
)
from rest_framework.exceptions import APIException

from scoreboard.errors import CODE_FOR_STATUS
from scoreboard.middleware_base import BeforeAfterMiddleware
from scoreboard.request_context import request_route

MULTIPROCESS_DIR = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")
if MULTIPROCESS_DIR and not os.path.isdir(MULTIPROCESS_DIR):
    raise ImproperlyConfigured(
        f"PROMETHEUS_MULTIPROC_DIR={MULTIPROCESS_DIR!r} is not a directory: create it (empty) "
        "before the server starts."
    )

# No `*_created` series: they double what is stored, and multi-process mode has none.
disable_created_metrics()

METRICS_PATH = "/metrics"
# Any other method is counted as "other": a client must not be able to invent label values.
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"})
WEBSOCKET = "websocket"
SSE = "sse"

# --- the series -----------------------------------------------------------------------------

HTTP_REQUESTS = Counter(
    "http_requests_total",
    "HTTP requests answered, by method, URL pattern (route) and status code.",
    ["method", "route", "status"],
)
HTTP_REQUEST_DURATION = Histogram(
    "http_request_duration_seconds",
    "Time from a request entering Django to its response (for a stream: its headers).",
    ["method", "route"],
)
SCORE_UPDATES_ACCEPTED = Counter(
    "scoreboard_score_updates_accepted_total",
    "Score updates recorded, by status: COUNTED, FLAGGED (counted, queued for a moderator) "
    "or HELD (not counted until a moderator approves it).",
    ["status"],
)
SCORE_UPDATES_REJECTED = Counter(
    "scoreboard_score_updates_rejected_total",
    "Score updates refused, by API error code and the exception that refused them.",
    ["code", "reason"],
)
ACTION_COMPLETIONS_REJECTED = Counter(
    "scoreboard_action_completions_rejected_total",
    "Action completions (game-server proofs) refused, by API error code and exception.",
    ["code", "reason"],
)
ACTION_TOKENS_ISSUED = Counter(
    "scoreboard_action_tokens_issued_total", "One-time action tokens issued."
)
ACTION_TOKENS_CONSUMED = Counter(
    "scoreboard_action_tokens_consumed_total", "Action tokens spent by a recorded score update."
)
ACTION_TOKENS_REJECTED = Counter(
    "scoreboard_action_tokens_rejected_total",
    "Action tokens presented that could not be spent, by reason: missing, unknown (or "
    "another player's), used, expired, mismatch (another action, type or increment).",
    ["reason"],
)
RATE_LIMIT_HITS = Counter(
    "scoreboard_rate_limit_hits_total",
    "Requests refused by a rate limit, by limit: score-update, auth, api-ip, api-instance.",
    ["limit"],
)
MODERATION_DECISIONS = Counter(
    "scoreboard_moderation_decisions_total",
    "Moderators' decisions that changed something, by action: APPROVE, REJECT, BAN.",
    ["action"],
)
LIVE_CONNECTIONS = Gauge(
    "scoreboard_live_connections",
    "Open live-board connections, by transport: websocket or sse.",
    ["transport"],
    multiprocess_mode="livesum",
)
LIVE_BROADCASTS_PUBLISHED = Counter(
    "scoreboard_live_broadcasts_published_total",
    "Live-board updates published to the cluster (one per channel and seq).",
)
LIVE_BROADCAST_LAG = Histogram(
    "scoreboard_live_broadcast_lag_seconds",
    "From the first mark of a channel as changed (a score commit) to the publication of the "
    "update that carries the change; the throttle interval bounds it in normal operation.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0),
)
LIVE_RESYNCS = Counter(
    "scoreboard_live_resyncs_total",
    "Live channels a node resent as a fresh snapshot to its clients because a publication "
    "never reached it (its channel-layer subscription was down when it was published).",
)
LIVE_FRAMES_SENT = Counter(
    "scoreboard_live_frames_sent_total",
    "Board frames (snapshots, updates, rank changes, new leaders) written to live clients, "
    "by transport.",
    ["transport"],
)
INDEX_WRITE_FAILURES = Counter(
    "scoreboard_leaderboard_index_write_failures_total",
    "Redis leaderboard index writes that failed after the database committed (reconcile "
    "repairs them), by operation: score, resync.",
    ["operation"],
)
RECONCILE_REPAIRS = Counter(
    "scoreboard_leaderboard_reconcile_repairs_total",
    "Drift repaired by leaderboard reconcile, by kind: entry_rewritten, stray_removed, "
    "index_rebuilt.",
    ["kind"],
)
# Exhaustion is per process (each worker has its own pool), so across workers the busiest
# one is reported: `livemax` for both, and active / max is that worker's utilisation.
DATABASE_POOL_ACTIVE = Gauge(
    "database_connection_pool_active",
    "Pooled database connections in use (the busiest worker process of this node).",
    ["database"],
    multiprocess_mode="livemax",
)
DATABASE_POOL_MAX = Gauge(
    "database_connection_pool_max",
    "Most connections one worker process's database pool may open (DB_POOL_MAX_SIZE).",
    ["database"],
    multiprocess_mode="livemax",
)

# --- helpers --------------------------------------------------------------------------------

P = ParamSpec("P")
R = TypeVar("R")


def rejections_counted(counter: Counter) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Count every API error a DRF handler raises in `counter`, by error code and exception
    class. Other exceptions (a database outage, a bug) are not refusals: they show as 5xx in
    `http_requests_total`."""

    def decorate(handler: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(handler)
        def counted(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return handler(*args, **kwargs)
            except APIException as error:
                code = getattr(error, "error_code", None) or CODE_FOR_STATUS.get(
                    error.status_code, "INTERNAL_ERROR"
                )
                counter.labels(code=code, reason=type(error).__name__).inc()
                raise

        return counted

    return decorate


def action_token_rejected(reason: str) -> None:
    ACTION_TOKENS_REJECTED.labels(reason=reason).inc()


class LiveConnectionCount:
    """Counts one live connection in `scoreboard_live_connections` from `open()` to the first
    `close()`; closing again, or without opening, changes nothing."""

    def __init__(self, transport: str) -> None:
        self._gauge = LIVE_CONNECTIONS.labels(transport=transport)
        self._open = False

    def open(self) -> None:
        if not self._open:
            self._open = True
            self._gauge.inc()

    def close(self) -> None:
        if self._open:
            self._open = False
            self._gauge.dec()


def live_broadcast_published(*, marked_at: float) -> None:
    """A batch took its `seq` and goes out; `marked_at` (seconds since the epoch, possibly
    another node's clock) is when its channel was first marked changed."""
    LIVE_BROADCASTS_PUBLISHED.inc()
    LIVE_BROADCAST_LAG.observe(max(0.0, time.time() - marked_at))


def database_pools_sampled(**_: Any) -> None:
    """Sample every pooled database's pool into the gauges (PostgreSQL with Django's psycopg
    pool; SQLite has none). Connected to `request_finished`, after Django has given the
    request's connection back, and run again at each scrape."""
    for alias in connections:
        pool = getattr(connections[alias], "pool", None)
        if pool is None:
            continue
        stats = pool.get_stats()
        DATABASE_POOL_ACTIVE.labels(database=alias).set(
            stats["pool_size"] - stats["pool_available"]
        )
        DATABASE_POOL_MAX.labels(database=alias).set(stats["pool_max"])


# --- HTTP -----------------------------------------------------------------------------------


def request_observed(request: HttpRequest, response: HttpResponseBase, seconds: float) -> None:
    if request.path_info == METRICS_PATH:
        return
    method = request.method if request.method in HTTP_METHODS else "other"
    route = request_route(request)
    HTTP_REQUESTS.labels(method=method, route=route, status=str(response.status_code)).inc()
    HTTP_REQUEST_DURATION.labels(method=method, route=route).observe(seconds)


class HttpMetricsMiddleware(BeforeAfterMiddleware):
    """`http_requests_total` and `http_request_duration_seconds` for every request but the
    scrape itself."""

    def before(self, request: HttpRequest) -> None:
        request._metrics_started_at = time.perf_counter()  # type: ignore[attr-defined]

    def after(self, request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
        started = request._metrics_started_at  # type: ignore[attr-defined]
        request_observed(request, response, time.perf_counter() - started)
        return response


# --- the scrape -----------------------------------------------------------------------------


def bearer_matches(authorization: str, token: str) -> bool:
    scheme, _, given = authorization.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        given.strip().encode(), token.encode()
    )


_LIVE_GAUGE_FILE = re.compile(r"gauge_live[a-z]+_(\d+)\.db")


def dead_processes_forgotten(directory: str) -> None:
    """Drop the live gauges (`live*` modes) of processes that have exited. uvicorn replaces a
    dead worker without a hook to call `mark_process_dead` (gunicorn's `child_exit` has one),
    so each scrape does it; counters and histograms of dead workers stay, as they must."""
    pids = {
        int(match[1]) for name in os.listdir(directory) if (match := _LIVE_GAUGE_FILE.match(name))
    }
    for pid in pids:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            multiprocess.mark_process_dead(pid, directory)
        except PermissionError:
            pass  # alive, another user's


def exposition() -> bytes:
    """The metrics in Prometheus' text format: every worker's, merged, in multi-process mode."""
    database_pools_sampled()
    if not MULTIPROCESS_DIR:
        return generate_latest(REGISTRY)
    dead_processes_forgotten(MULTIPROCESS_DIR)
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=MULTIPROCESS_DIR)
    return generate_latest(registry)


@require_safe
def metrics_view(request: HttpRequest) -> HttpResponse:
    """`/metrics`. With SCOREBOARD_METRICS_TOKEN set: only for `Authorization: Bearer <token>`
    (401 otherwise). Without it: open with DEBUG on, absent (404) with DEBUG off."""
    token = settings.SCOREBOARD_METRICS_TOKEN
    if not token and not settings.DEBUG:
        raise Http404
    if token and not bearer_matches(request.headers.get("Authorization", ""), token):
        return HttpResponse(
            "A valid bearer token is required.\n",
            status=401,
            content_type="text/plain; charset=utf-8",
            headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
        )
    return HttpResponse(exposition(), content_type=CONTENT_TYPE_PLAIN_0_0_4)
