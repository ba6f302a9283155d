"""Server → client frames, encoded once per broadcast and shared by every local client."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import Any


def encode(data: Any) -> str:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


def timestamp(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class Frame:
    event: str
    # The `data` object, already JSON: the publisher encodes it once for the whole cluster.
    data_json: str

    @classmethod
    def of(cls, event: str, data: dict[str, Any]) -> Frame:
        return cls(event, encode(data))


class Batch:
    """The frames of one publication on one channel, as WebSocket text and as Server-Sent
    Events, each encoding made on first use and then reused for every subscriber of this
    process. `seq` is that of the board update the batch carries."""

    def __init__(self, channel: str, seq: int, frames: list[Frame]) -> None:
        self.channel = channel
        self.seq = seq
        self.frames = frames

    def as_message(self) -> dict[str, Any]:
        """The channel-layer message that carries this batch to every node."""
        return {
            "type": "live.batch",
            "channel": self.channel,
            "seq": self.seq,
            "frames": [[frame.event, frame.data_json] for frame in self.frames],
        }

    @classmethod
    def from_message(cls, message: dict[str, Any]) -> Batch:
        frames = [Frame(event, data_json) for event, data_json in message["frames"]]
        return cls(message["channel"], message["seq"], frames)

    @cached_property
    def websocket_texts(self) -> list[str]:
        return [f'{{"event":{encode(f.event)},"data":{f.data_json}}}' for f in self.frames]

    @cached_property
    def event_stream(self) -> bytes:
        return "".join(f"event: {f.event}\ndata: {f.data_json}\n\n" for f in self.frames).encode()
