"""Lua scripts, registered once per Redis client.

Registering a script computes its SHA-1, which the calls then name (EVALSHA). Board reads,
score writes, rate-limit checks and live marks each run a script or several per request:
registering them anew every time was pure cost on those paths.
"""

from __future__ import annotations

import functools
from typing import Any

# Clients are per process and per configured Redis (one in production; tests switch a few).
CLIENTS_KEPT = 8


@functools.lru_cache(maxsize=CLIENTS_KEPT * 16)
def registered(client: Any, script: str) -> Any:
    """`client.register_script(script)`, made once for each client and script."""
    return client.register_script(script)
