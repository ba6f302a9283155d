"""Security events: refused credentials, forged signatures, replayed tokens.

Each is one WARNING on the `scoreboard.security` logger with an `event` field, so a log
pipeline can alert on them apart from ordinary client errors.
"""

from __future__ import annotations

import logging
from typing import Any

logger = logging.getLogger("scoreboard.security")


def security_event(event: str, message: str, **fields: Any) -> None:
    logger.warning("%s: %s", event, message, extra={"event": event, **fields})
