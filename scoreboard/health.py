"""Liveness and readiness probes for load balancers and orchestrators."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.core.cache import cache
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_safe

from scoreboard import errors

logger = logging.getLogger(__name__)

CHECK_TIMEOUT_SECONDS = 3.0
READINESS_CACHE_KEY = "scoreboard:readyz"


@require_safe
async def healthz(request: HttpRequest) -> JsonResponse:
    """The process is up and serving; touches no dependency."""
    return JsonResponse({"success": True, "data": {"status": "ok"}})


def _check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    connection.close()


def _check_cache() -> None:
    cache.set(READINESS_CACHE_KEY, "1", timeout=10)
    if cache.get(READINESS_CACHE_KEY) != "1":
        raise RuntimeError("cache did not return the value just written")


async def _check_channel_layer() -> None:
    layer = get_channel_layer()
    if layer is None:
        raise RuntimeError("no channel layer configured")
    await layer.group_send("readyz", {"type": "readyz.probe"})


async def _run_check(name: str, check: Callable[[], Awaitable[None]]) -> str:
    try:
        await asyncio.wait_for(check(), timeout=CHECK_TIMEOUT_SECONDS)
    except TimeoutError:
        logger.warning("Readiness check %s timed out", name)
        return "timeout"
    except Exception as exc:
        logger.warning("Readiness check %s failed: %s", name, exc)
        return "unavailable"
    return "ok"


@require_safe
async def readyz(request: HttpRequest) -> JsonResponse:
    """Ready when the database, the cache and the channel layer all answer; otherwise 503
    naming the parts that do not."""
    names = ("database", "cache", "channelLayer")
    results = await asyncio.gather(
        _run_check("database", sync_to_async(_check_database, thread_sensitive=False)),
        _run_check("cache", sync_to_async(_check_cache, thread_sensitive=False)),
        _run_check("channelLayer", _check_channel_layer),
    )
    checks = dict(zip(names, results, strict=True))
    failing = [name for name, result in checks.items() if result != "ok"]
    if failing:
        return errors.error_response(
            "SERVICE_UNAVAILABLE",
            f"Not ready: {', '.join(failing)} unavailable.",
            details={"checks": checks},
            retry_after=errors.OUTAGE_RETRY_AFTER_SECONDS,
        )
    return JsonResponse({"success": True, "data": {"status": "ready", "checks": checks}})
