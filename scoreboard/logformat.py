"""Log formats: one JSON object per line in production, readable text in development.

Fields passed with `extra=` become keys of the JSON object, so a log line can be searched by
`user_id`, `route` or `event` without parsing its message.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

# Attributes every LogRecord has; anything else on a record came from `extra=` or a filter.
# uvicorn's `color_message` repeats the message with terminal colours.
_RECORD_ATTRIBUTES = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "color_message",
}


def record_extra(record: logging.LogRecord) -> dict[str, Any]:
    return {key: value for key, value in record.__dict__.items() if key not in _RECORD_ATTRIBUTES}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(record_extra(record))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """`time LEVEL logger [request id] message key=value ...`, for development.

    Extras are appended unless empty or already shown by the message, so the request line
    reads `GET /api/v1/users/me 200 3.1ms user_id=… client_ip=…`.
    """

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        message = record.getMessage()
        fields = " ".join(
            f"{key}={value}"
            for key, value in record_extra(record).items()
            if key != "request_id" and value is not None and str(value) not in message
        )
        if not fields:
            return line
        first, newline, rest = line.partition("\n")
        return f"{first} {fields}{newline}{rest}"
