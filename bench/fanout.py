"""WebSocket fan-out across two app nodes (docs/realtime.md, PERFORMANCE-NOTES.md).

For each client count: two fresh uvicorn nodes (one worker each) on one PostgreSQL database and
one Redis; N clients in one separate process, alternately on node A and node B, each
subscribed to `leaderboard.top10`; a writer process commits scores at a steady rate during the
measured window. Reported per client count:

* connected sockets and failures; sockets closed and `seq` gaps during the window.
* Commit → receipt latency, p50/p99/max over every (commit, client) pair: for each committed
  score, the time at which each client receives the first broadcast whose board shows it (the
  player's score on the board at least the committed one) minus the commit time. The commit
  time is taken by an `on_commit` callback registered ahead of the app's own: just after
  PostgreSQL's COMMIT returned, before the leaderboard index and the live channels hear of it.
  The receipt time is when the client process's event loop reads the frame, so a saturated
  client process adds to it (its CPU is reported). All processes read one machine's wall clock.
  The latency is split at the frame's `timestamp`, which is when the publishing node read the
  board: commit → board read (flush tick, throttle gate, claim) and board read → receipt
  (commit of the `seq`, publish, Redis pub/sub, each node's hub, socket writes, the client).
  A commit made while the channel's gate is still set waits for the trailing edge by design
  (up to one interval plus a tick); at one score per second and a 1 s interval, some do.
  A commit that no board published before the window closed is not counted (reported).
* Deliveries/s per node: WebSocket messages (updates, rank changes, new leaders) received from
  that node during the window, divided by the window; CPU seconds of each node, the client
  process and the writer over the window, and node CPU per delivery. At one board update per
  second the deliveries are bounded by the offered load (sockets per node times messages per
  update), not by capacity: CPU per delivery is the figure to hold against the goal (20,000/s
  on one core is 0.05 ms each). `--interval-ms 100 --scores-per-second 10` offers up to ten
  updates a second.
* Memory per idle connection: a node's RSS (all its processes) with one warm-up socket, against
  its RSS with all its sockets connected, subscribed and idle, divided by their number.

Clients offer permessage-deflate, as browsers do (`--no-deflate` not to): production's live
nodes refuse it (Makefile, Dockerfile). The clients read no compressed frames, so a node that
accepts it fails every connection ("server compresses").

The writer calls the app's services (`action_complete`, then `score_update_apply`, as the API
does) in a process of its own with the nodes' settings instead of going through HTTP: the score
path's cost is bench/score_updates.py's subject, and here it would only take CPU from the
fan-out. Its ten players take turns, so every commit changes the top 10 (and, with equal
increments, moves most ranks: an update comes with several rank changes, each a WebSocket
message of its own; compare deliveries/s with updates/s). With `--movers 1` only the leader
scores: after the first commit each one changes the leader's score alone, one update and no
other message. The anomaly thresholds are raised in the writer so that no update is held.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import bisect
import contextlib
import itertools
import json
import multiprocessing
import os
import re
import resource
import secrets
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

import redis

from bench import harness

CHANNEL = "leaderboard.top10"
SUBSCRIBE = json.dumps({"event": "subscribe", "data": {"channel": CHANNEL}})
UPDATE_PREFIX = b'{"event":"leaderboard.update"'
SEQ = re.compile(rb'"seq":(\d+)')
OPCODE_TEXT, OPCODE_CLOSE, OPCODE_PING, OPCODE_PONG = 0x1, 0x8, 0x9, 0xA
PLAYERS = 10  # all of them on the top 10, so that every commit changes it
LISTENER_USERS = 4  # the sockets share these users' access tokens
ACTION_TYPE = "ACHIEVEMENT_UNLOCK"  # no minimum duration, no daily cap
HANDSHAKES_AT_ONCE = 64
CALL_TIMEOUT = 600.0  # the longest any one command to a child process may take
SETTLE_SECONDS = 2.0  # after connecting, before the idle RSS is read
NODE_COLUMNS = (
    "sockets",
    "deliveries/s",
    "updates/s",
    "CPU %",
    "CPU ms/delivery",
    "CPU ms/update",
    "KiB/idle conn",
)


# --- child processes ------------------------------------------------------------------------


class Child:
    """A spawned process answering commands sent through a pipe: the clients or the writer.
    Stopped through its own handle."""

    def __init__(self, target: Callable[..., None], *args: Any) -> None:
        context = multiprocessing.get_context("spawn")
        self.pipe, child_end = context.Pipe()
        self.process = context.Process(target=target, args=(*args, child_end), daemon=True)
        self.process.start()

    @property
    def pid(self) -> int:
        return self.process.pid or 0

    def call(self, *command: Any, timeout: float = CALL_TIMEOUT) -> Any:
        self.pipe.send(command)
        if not self.pipe.poll(timeout):
            raise RuntimeError(f"{command[0]!r} took more than {timeout} s")
        status, value = self.pipe.recv()
        if status == "error":
            raise RuntimeError(f"{command[0]!r} failed in the child process:\n{value}")
        return value

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self.pipe.send(("exit",))
        self.process.join(30)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(10)


def _answer(pipe: Connection, handle: Callable[[tuple[Any, ...]], Any]) -> None:
    """Answer commands until told to exit (or the parent is gone)."""
    while True:
        try:
            command = pipe.recv()
        except EOFError:
            return
        if command[0] == "exit":
            return
        try:
            pipe.send(("ok", handle(command)))
        except Exception:
            pipe.send(("error", traceback.format_exc()))


def raise_open_files_limit() -> None:
    """Up to the hard limit: thousands of sockets. Inherited by the nodes started later."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# --- the writer -----------------------------------------------------------------------------


def writer_main(env: dict[str, str], pipe: Connection) -> None:
    os.environ.update(harness.NODE_SETTINGS | env)
    import django

    django.setup()
    writer = _Writer()
    _answer(pipe, writer.handle)


class _Writer:
    """Players, listeners' tokens, and score commits through the app's services."""

    def handle(self, command: tuple[Any, ...]) -> Any:
        if command[0] == "setup":
            return self.setup()
        if command[0] == "run":
            return self.run(rate=command[1], duration=command[2], movers=command[3])
        raise ValueError(f"unknown command {command[0]!r}")

    def setup(self) -> list[str]:
        """Create the action catalog, a game server, the players (each with one score) and
        the listeners; returns the listeners' access tokens."""
        from accounts.services import token_pair_for_credentials, user_register
        from scoring.services import actions_load_defaults, game_server_create

        actions_load_defaults()
        self.server, self.secret = game_server_create(name="bench-fanout")
        password = secrets.token_urlsafe(16)
        self.players = [
            user_register(
                username=f"fanout-player-{index}",
                email=f"fanout-player-{index}@example.com",
                password=password,
                country="US",
            )
            for index in range(PLAYERS)
        ]
        for player in self.players:
            self.commit(player)
        tokens = []
        for index in range(LISTENER_USERS):
            user = user_register(
                username=f"fanout-listener-{index}",
                email=f"fanout-listener-{index}@example.com",
                password=password,
                country="US",
            )
            tokens.append(token_pair_for_credentials(username=user.username, password=password))
        return [pair.access for pair in tokens]

    def commit(self, player: Any) -> tuple[str, int, float] | None:
        """One action and its score; (user id, new score, commit time), None if held."""
        from django.db import transaction

        from scoring.services import score_update_apply

        action_id, moment, issued = harness.complete_action(
            player, key_id=self.server.key_id, secret=self.secret, action_type=ACTION_TYPE
        )
        committed_at: list[float] = []
        with transaction.atomic():
            # Runs first of the callbacks: before the index and the live channels are told.
            transaction.on_commit(lambda: committed_at.append(time.time()))
            applied = score_update_apply(
                user=player,
                action_token=issued.token,
                action_type=ACTION_TYPE,
                action_id=action_id,
                score_increment=issued.score_increment,
                client_timestamp=moment,
                ip_address=None,
                user_agent="bench-fanout",
            )
        if applied.is_held:
            return None
        return str(player.pk), applied.new_score, committed_at[0]

    def run(self, *, rate: float, duration: float, movers: int) -> dict[str, Any]:
        """Commit `rate` scores a second for `duration` seconds, the first `movers` players
        taking turns: with all of them, each commit reorders the board (an update and several
        rank changes); with one, only the leader's score grows (one update, nothing else)."""
        commits, held, behind = [], 0, 0
        started = time.monotonic()
        for index in range(max(1, round(rate * duration))):
            delay = started + index / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            elif delay < -0.1:
                behind += 1
            made = self.commit(self.players[index % movers])
            if made is None:
                held += 1
            else:
                commits.append(made)
        return {"commits": commits, "held": held, "behind": behind}


# --- the clients ----------------------------------------------------------------------------


def clients_main(pipe: Connection) -> None:
    import uvloop

    raise_open_files_limit()
    uvloop.run(_Clients(pipe).serve())


@dataclass
class _Window:
    """What the clients record while the measured window is open."""

    open: bool = False
    opened_at: float = 0.0
    closed_at: float = 0.0
    # The text of each broadcast update, once per seq (every client gets the same bytes).
    boards: dict[int, str] = field(default_factory=dict)


class _LeanSocket(asyncio.Protocol):
    """One client socket, speaking just enough RFC 6455 to listen: the handshake, one masked
    text frame out (the subscription), and unfragmented, uncompressed frames in. With the
    `websockets` client (a task, a queue and a message assembler per socket), 5,000 sockets
    took 39% of a core and put p50 at 426 ms, most of it the client reading its own backlog;
    this one took 9% and measured 126 ms on the same run of updates (every commit reordering
    the board). Every frame of one read is stamped with the time of that read."""

    def __init__(self, node: int, request: bytes, window: _Window) -> None:
        self.node = node  # which node it is on
        self.request = request
        self.window = window
        loop = asyncio.get_running_loop()
        self.upgraded: asyncio.Future[str] = loop.create_future()  # its extensions header
        self.snapshot: asyncio.Future[None] = loop.create_future()
        self.closed = loop.create_future()
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.is_upgraded = False
        self.frames = 0
        self.updates: list[tuple[int, float]] = []
        self.close_code: int | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's: not a subclass
        self.transport.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        gone = ConnectionError(f"closed by the server ({self.close_code or exc or 'EOF'})")
        for future in (self.upgraded, self.snapshot):
            if not future.done():
                future.set_exception(gone)
        if not self.closed.done():
            self.closed.set_result(None)

    def data_received(self, data: bytes) -> None:
        received = time.time()
        self.buffer += data
        if not self.is_upgraded and not self._read_handshake():
            return
        try:
            self._read_frames(received)
        except ValueError as error:
            if not self.snapshot.done():
                self.snapshot.set_exception(error)
            self.abort()

    def send_text(self, text: str) -> None:
        self._send(OPCODE_TEXT, text.encode())

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self._send(OPCODE_CLOSE, (1000).to_bytes(2, "big"))
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def _read_handshake(self) -> bool:
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return False
        head = bytes(self.buffer[:end]).decode("latin-1").split("\r\n")
        del self.buffer[: end + 4]
        headers = {
            name.strip().lower(): value.strip()
            for name, _, value in (line.partition(":") for line in head[1:])
        }
        if not head[0].startswith("HTTP/1.1 101"):
            self.upgraded.set_exception(ConnectionError(head[0]))
            self.abort()
            return False
        extensions = headers.get("sec-websocket-extensions", "none")
        if "permessage-deflate" in extensions:
            # This client reads no compressed frames: the server was started compressing.
            self.upgraded.set_exception(ConnectionError("server compresses"))
            self.abort()
            return False
        self.is_upgraded = True
        self.upgraded.set_result(extensions)
        return True

    def _read_frames(self, received: float) -> None:
        buffer, position, size = self.buffer, 0, len(self.buffer)
        while size - position >= 2:
            first, second = buffer[position], buffer[position + 1]
            length, header = second & 0x7F, 2
            if length == 126:
                header = 4
                length = int.from_bytes(buffer[position + 2 : position + 4], "big")
            elif length == 127:
                header = 10
                length = int.from_bytes(buffer[position + 2 : position + 10], "big")
            if size - position < header + length:
                break
            if second & 0x80 or first & 0x70 or not first & 0x80:
                raise ValueError("masked, compressed or fragmented frame from the server")
            payload = bytes(buffer[position + header : position + header + length])
            position += header + length
            opcode = first & 0x0F
            if opcode == OPCODE_TEXT:
                self._text(payload, received)
            elif opcode == OPCODE_PING:
                self._send(OPCODE_PONG, payload)
            elif opcode == OPCODE_CLOSE:
                self.close_code = int.from_bytes(payload[:2], "big") if payload else 1005
                self.close()
        del buffer[:position]

    def _text(self, payload: bytes, received: float) -> None:
        if not self.snapshot.done():
            if b'"snapshot":true' in payload[:200]:
                self.snapshot.set_result(None)
            else:
                self.snapshot.set_exception(ValueError("no snapshot"))
            return
        if not self.window.open:
            return
        self.frames += 1
        if payload.startswith(UPDATE_PREFIX):
            seq = int(SEQ.search(payload, 0, 120)[1])  # type: ignore[index]
            self.updates.append((seq, received))
            self.window.boards.setdefault(seq, payload.decode())

    def _send(self, opcode: int, payload: bytes) -> None:
        """A client frame: final, masked (RFC 6455 requires it of clients)."""
        if self.transport is None:
            raise ConnectionError("not connected")
        mask = secrets.token_bytes(4)
        size = len(payload)
        length = bytes([0x80 | size]) if size < 126 else bytes([0x80 | 126]) + size.to_bytes(2)
        masked = bytes(byte ^ mask[index % 4] for index, byte in enumerate(payload))
        self.transport.write(bytes([0x80 | opcode]) + length + mask + masked)


def upgrade_request(url: str, token: str, *, deflate: bool) -> bytes:
    """The handshake of one socket, with the access token as a bearer header."""
    parts = urlsplit(url)
    lines = [
        f"GET {parts.path} HTTP/1.1",
        f"Host: {parts.netloc}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {base64.b64encode(secrets.token_bytes(16)).decode()}",
        "Sec-WebSocket-Version: 13",
        f"Authorization: Bearer {token}",
    ]
    if deflate:
        lines.append("Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


class _Clients:
    def __init__(self, pipe: Connection) -> None:
        self.pipe = pipe
        self.listeners: list[_LeanSocket] = []
        self.window = _Window()

    async def serve(self) -> None:
        while True:
            command = await asyncio.to_thread(self.pipe.recv)
            if command[0] == "exit":
                await self.close_all()
                return
            try:
                self.pipe.send(("ok", await self.handle(command)))
            except Exception:
                self.pipe.send(("error", traceback.format_exc()))

    async def handle(self, command: tuple[Any, ...]) -> Any:
        if command[0] == "connect":
            return await self.connect(*command[1:])
        if command[0] == "record":
            self.window.open, self.window.opened_at = True, time.time()
            return None
        if command[0] == "stop":
            return self.stop()
        if command[0] == "close":
            await self.close_all()
            return None
        raise ValueError(f"unknown command {command[0]!r}")

    async def connect(
        self, urls: list[str], tokens: list[str], count: int, deflate: bool, timeout: float
    ) -> dict[str, Any]:
        """Open `count` more sockets, alternately on each node, each subscribed and past its
        snapshot. Gives up on those not open by `timeout` seconds."""
        loop = asyncio.get_running_loop()
        deadline = time.monotonic() + timeout
        gate = asyncio.Semaphore(HANDSHAKES_AT_ONCE)
        failures: Counter[str] = Counter()
        extensions: set[str] = set()
        first = len(self.listeners)

        async def open_one(index: int) -> None:
            async with gate:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    failures["deadline"] += 1
                    return
                node = index % len(urls)
                url = urlsplit(urls[node])
                request = upgrade_request(urls[node], tokens[index % len(tokens)], deflate=deflate)
                socket: _LeanSocket | None = None
                try:
                    async with asyncio.timeout(remaining):
                        _, socket = await loop.create_connection(
                            lambda: _LeanSocket(node, request, self.window),
                            url.hostname or "127.0.0.1",
                            url.port or 80,
                        )
                        extensions.add(await socket.upgraded)
                        socket.send_text(SUBSCRIBE)
                        await socket.snapshot
                except Exception as error:
                    failures[_failure_name(error)] += 1
                    if socket is not None:
                        socket.abort()
                    return
                self.listeners.append(socket)

        await asyncio.gather(*(open_one(first + offset) for offset in range(count)))
        per_node = Counter(listener.node for listener in self.listeners)
        return {
            "open": [per_node[node] for node in range(len(urls))],
            "failures": failures,
            "extensions": sorted(extensions),
        }

    def stop(self) -> dict[str, Any]:
        window = self.window
        window.open, window.closed_at = False, time.time()
        frames = Counter[int]()
        for listener in self.listeners:
            frames[listener.node] += listener.frames
        return {
            "window": (window.opened_at, window.closed_at),
            "boards": window.boards,
            "frames": dict(frames),
            "updates": [(listener.node, listener.updates) for listener in self.listeners],
            "closed": Counter(
                str(listener.close_code) for listener in self.listeners if listener.closed.done()
            ),
        }

    async def close_all(self) -> None:
        listeners, self.listeners = self.listeners, []
        for listener in listeners:
            listener.close()
        if listeners:
            await asyncio.wait([listener.closed for listener in listeners], timeout=30)
        for listener in listeners:
            listener.abort()


def _failure_name(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


# --- figures --------------------------------------------------------------------------------


@dataclass
class Latencies:
    """Commit → receipt of every (commit, client) pair, and its two parts."""

    total: list[float] = field(default_factory=list)
    to_board_read: list[float] = field(default_factory=list)  # once per commit
    to_receipt: list[float] = field(default_factory=list)  # board read → receipt, per pair
    unpublished: int = 0  # commits no board showed before the window closed
    missed: int = 0  # (commit, client) pairs the client never received
    later_frame: int = 0  # pairs received only in a later update (a gap)


def commit_latencies(commits: list[tuple[str, int, float]], recorded: dict[str, Any]) -> Latencies:
    boards = {}
    for seq, text in recorded["boards"].items():
        data = json.loads(text)["data"]
        scores = {row["userId"]: row["score"] for row in data["leaderboard"]}
        boards[seq] = (scores, datetime.fromisoformat(data["timestamp"]).timestamp())
    seqs = sorted(boards)
    found = Latencies()
    first_seqs = []  # (commit time, first seq showing it)
    for user_id, score, committed_at in commits:
        first = next((seq for seq in seqs if boards[seq][0].get(user_id, -1) >= score), None)
        if first is None:
            found.unpublished += 1
            continue
        first_seqs.append((committed_at, first))
        found.to_board_read.append(boards[first][1] - committed_at)
    for _, updates in recorded["updates"]:
        received = dict(updates)
        ordered = sorted(received)
        for committed_at, first in first_seqs:
            seq = first if first in received else None
            if seq is None:
                position = bisect.bisect_left(ordered, first)
                if position == len(ordered):
                    found.missed += 1
                    continue
                seq = ordered[position]
                found.later_frame += 1
            found.total.append(received[seq] - committed_at)
            found.to_receipt.append(received[seq] - boards[seq][1])
    return found


def seq_gaps(recorded: dict[str, Any]) -> int:
    gaps = 0
    for _, updates in recorded["updates"]:
        seqs = [seq for seq, _ in updates]
        gaps += sum(1 for before, after in itertools.pairwise(seqs) if after != before + 1)
    return gaps


# --- one client count -----------------------------------------------------------------------


@dataclass
class Settings:
    duration: float
    scores_per_second: float
    movers: int
    interval_ms: int
    deflate: bool
    connect_timeout: float


def measure(
    count: int,
    *,
    env: dict[str, str],
    tokens: list[str],
    writer: Child,
    settings: Settings,
    log_dir: Path,
    profile_path: Path | None = None,
) -> tuple[dict[str, Any], Latencies, list[harness.Profile]]:
    with (
        harness.served_node(env, log_dir=log_dir) as node_a,
        harness.served_node(env, log_dir=log_dir) as node_b,
    ):
        nodes = [node_a, node_b]
        urls = [node.url.replace("http://", "ws://", 1) + "/ws/leaderboard" for node in nodes]
        clients = Child(clients_main)
        try:
            warm = clients.call("connect", urls, tokens, len(nodes), settings.deflate, 60)
            if warm["open"] != [1] * len(nodes):
                raise RuntimeError(f"warm-up sockets failed: {warm}")
            time.sleep(SETTLE_SECONDS)
            rss_before = [node.rss_bytes() for node in nodes]
            opened = clients.call(
                "connect",
                urls,
                tokens,
                count - len(nodes),
                settings.deflate,
                settings.connect_timeout,
            )
            time.sleep(SETTLE_SECONDS)
            rss_after = [node.rss_bytes() for node in nodes]

            cpu_before = [node.cpu_seconds() for node in nodes]
            clients_cpu, writer_cpu = (
                harness.cpu_seconds(clients.pid),
                harness.cpu_seconds(writer.pid),
            )
            clients.call("record")
            sampled: contextlib.AbstractContextManager[list[harness.Profile]]
            if profile_path:
                sampled = harness.profiled(node_a, profile_path)
            else:
                sampled = contextlib.nullcontext([])
            with sampled as profiles:
                written = writer.call(
                    "run", settings.scores_per_second, settings.duration, settings.movers
                )
                # The last commit's update: at most one interval plus a tick, plus fan-out.
                time.sleep(settings.interval_ms / 1000 + 1.5)
                recorded = clients.call("stop")
            cpu = [
                node.cpu_seconds() - before for node, before in zip(nodes, cpu_before, strict=True)
            ]
            clients_cpu = harness.cpu_seconds(clients.pid) - clients_cpu
            writer_cpu = harness.cpu_seconds(writer.pid) - writer_cpu
            clients.call("close", timeout=60)
        except Exception:
            for node in nodes:
                print(f"--- {node.log_path} (last lines)\n" + _tail(node.log_path))
            raise
        finally:
            clients.stop()

    window = recorded["window"][1] - recorded["window"][0]
    latencies = commit_latencies(written["commits"], recorded)
    delivered = [recorded["frames"].get(index, 0) for index in range(len(nodes))]
    updates = Counter[int]()
    for node_index, received in recorded["updates"]:
        updates[node_index] += len(received)
    row: dict[str, Any] = {
        "clients": count,
        "connected": sum(opened["open"]),
        "failed": ", ".join(f"{name}: {n}" for name, n in opened["failures"].items()) or "0",
        "closed in run": ", ".join(f"{code}: {n}" for code, n in recorded["closed"].items()) or "0",
        "seq gaps": seq_gaps(recorded),
        "commits": len(written["commits"]),
        "updates": len(recorded["boards"]),
        **harness.latency_summary_ms(latencies.total),
        "read p50/p99 ms": _p50_p99(latencies.to_board_read),
        "fan-out p50/p99 ms": _p50_p99(latencies.to_receipt),
        "missed pairs": latencies.missed,
        "window s": round(window, 1),
    }
    for index, name in enumerate("AB"):
        row[f"{name} sockets"] = opened["open"][index]
        row[f"{name} deliveries/s"] = round(delivered[index] / window)
        row[f"{name} CPU %"] = round(100 * cpu[index] / window, 1)
        row[f"{name} CPU ms/delivery"] = round(1000 * cpu[index] / max(delivered[index], 1), 3)
        row[f"{name} updates/s"] = round(updates[index] / window)
        row[f"{name} CPU ms/update"] = round(1000 * cpu[index] / max(updates[index], 1), 3)
        row[f"{name} KiB/idle conn"] = round(
            (rss_after[index] - rss_before[index]) / 1024 / max(opened["open"][index] - 1, 1), 1
        )
    row["clients CPU %"] = round(100 * clients_cpu / window, 1)
    row["writer CPU %"] = round(100 * writer_cpu / window, 1)
    row["writer behind"] = written["behind"]
    row["held"] = written["held"]
    row["extensions"] = "; ".join(opened["extensions"])
    row["unpublished commits"] = latencies.unpublished
    return row, latencies, profiles


def _verdict(met: bool) -> str:
    return "met" if met else "not met"


def _p50_p99(seconds: list[float]) -> str:
    summary = harness.latency_summary_ms(seconds)
    return f"{summary['p50_ms']:.0f} / {summary['p99_ms']:.0f}"


def _tail(path: Path, lines: int = 20) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


# --- the run --------------------------------------------------------------------------------


@contextlib.contextmanager
def redis_keys_removed(prefix: str) -> Iterator[None]:
    """Delete every key under `prefix` in the benchmark's Redis afterwards."""
    try:
        yield
    finally:
        client = redis.Redis.from_url(harness.REDIS_URL, socket_connect_timeout=2)
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)


def plot_cdf(path: Path, curves: dict[int, list[float]], goal_ms: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(8, 5))
    for count, seconds in curves.items():
        if not seconds:
            continue
        ordered = sorted(value * 1000 for value in seconds)
        fractions = [(index + 1) / len(ordered) for index in range(len(ordered))]
        axes.plot(ordered, fractions, label=f"{count:,} clients")
    axes.axvline(goal_ms, color="grey", linestyle="--", label=f"goal p99 {goal_ms:.0f} ms")
    axes.axhline(0.99, color="grey", linestyle=":")
    axes.set_xscale("log")
    axes.set_xlabel("commit → receipt (ms, log scale)")
    axes.set_ylabel("fraction of (commit, client) pairs")
    axes.set_title("WebSocket fan-out, two nodes: commit → receipt")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def client_counts(text: str) -> list[int]:
    counts = [int(part) for part in text.split(",") if part.strip()]
    if not counts or min(counts) < 2:
        raise argparse.ArgumentTypeError("client counts are integers of at least 2")
    return counts


def positive(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be above 0")
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1,000 clients for 15 s")
    parser.add_argument("--clients", type=client_counts, help="e.g. 1000,5000,10000")
    parser.add_argument(
        "--duration", type=positive, help="seconds of scores per count (60, quick 15)"
    )
    parser.add_argument("--scores-per-second", type=positive, default=1.0)
    parser.add_argument(
        "--movers",
        type=int,
        choices=range(1, PLAYERS + 1),
        default=PLAYERS,
        metavar=f"1-{PLAYERS}",
        help=f"players who score, in turn ({PLAYERS}: every commit reorders the board; "
        "1: only the leader's score moves)",
    )
    parser.add_argument(
        "--interval-ms", type=int, default=1000, help="SCOREBOARD_BROADCAST_INTERVAL_MS"
    )
    parser.add_argument("--no-deflate", action="store_true", help="clients refuse compression")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="sample node A with py-spy during each window (its figures then include the sampler)",
    )
    args = parser.parse_args()
    counts = args.clients or ([1000] if args.quick else [1000, 5000, 10000])
    settings = Settings(
        duration=args.duration or (15.0 if args.quick else 60.0),
        scores_per_second=args.scores_per_second,
        movers=args.movers,
        interval_ms=args.interval_ms,
        deflate=not args.no_deflate,
        connect_timeout=max(60.0, max(counts) / 20),
    )

    raise_open_files_limit()
    # Each kind of run keeps its own latest results: leader-only, and sampled (its figures
    # include the sampler).
    name = "fanout" + ("-leader-only" if args.movers == 1 else "") + ("-profiled" * args.profile)
    report = harness.Report(name, "WebSocket fan-out: two app nodes, one board channel")
    prefix = f"bench-fanout-{secrets.token_hex(4)}"
    rows, curves = [], {}
    profiles: list[tuple[int, harness.Profile]] = []
    with (
        harness.fresh_database("bench_fanout") as database_url,
        redis_keys_removed(prefix),
        tempfile.TemporaryDirectory(prefix="bench-fanout-") as work,
    ):
        env = {
            "DATABASE_URL": database_url,
            "REDIS_URL": harness.REDIS_URL,
            "REDIS_KEY_PREFIX": prefix,
            "SCOREBOARD_BROADCAST_INTERVAL_MS": str(settings.interval_ms),
        }
        writer = Child(
            writer_main,
            env
            | {
                "SCOREBOARD_ANOMALY_FLAG_THRESHOLD": "1000000",
                "SCOREBOARD_ANOMALY_HOLD_THRESHOLD": "1000000",
            },
        )
        try:
            tokens = writer.call("setup")
            harness.manage(env, "rebuild_leaderboards")
            for count in counts:
                print(f"\n{count:,} clients …", flush=True)
                row, latencies, found = measure(
                    count,
                    env=env,
                    tokens=tokens,
                    writer=writer,
                    settings=settings,
                    log_dir=Path(work),
                    profile_path=report.artifact(f"profile-{count}.txt") if args.profile else None,
                )
                profiles += [(count, profile) for profile in found]
                rows.append(row)
                curves[count] = latencies.total
                print(json.dumps(row, ensure_ascii=False), flush=True)
        finally:
            writer.stop()

    report.table(
        "Latency: commit → receipt over every (commit, client) pair",
        [
            "clients",
            "connected",
            "failed",
            "closed in run",
            "seq gaps",
            "commits",
            "updates",
            "p50_ms",
            "p99_ms",
            "max_ms",
            "read p50/p99 ms",
            "fan-out p50/p99 ms",
            "missed pairs",
            "unpublished commits",
        ],
        rows,
    )
    report.table(
        "Per node: deliveries, CPU over the window, memory per idle connection",
        [
            "clients",
            "window s",
            *(f"{node} {column}" for node in "AB" for column in NODE_COLUMNS),
            "clients CPU %",
            "writer CPU %",
            "writer behind",
            "held",
            "extensions",
        ],
        rows,
    )
    report.note(
        f"Two uvicorn nodes, one worker each; {settings.scores_per_second:g} score(s)/s by "
        f"{settings.movers} of the {PLAYERS} players on the board in turn for "
        f"{settings.duration:g} s per client count; SCOREBOARD_BROADCAST_INTERVAL_MS="
        f"{settings.interval_ms}; clients {'offer' if settings.deflate else 'refuse'} "
        "permessage-deflate. Clients, writer, nodes, PostgreSQL and Redis share the machine's "
        f"{os.cpu_count()} cores: CPU % is of one core."
    )
    report.note(
        "Goals (2 cores): 5,000 clients at p99 ≤ 250 ms, commit → receipt, at one board update "
        "per second; ≥ 20,000 deliveries/s per node (≤ 0.05 ms CPU per delivery on one core); "
        "≤ 64 KiB per idle connection. Deliveries/s here are the offered load, not a ceiling."
    )
    for row in rows:
        cpu = max(row[f"{node} CPU ms/delivery"] for node in "AB")
        memory = max(row[f"{node} KiB/idle conn"] for node in "AB")
        verdicts = [
            f"CPU per delivery {cpu} ms (≤ 0.05: {_verdict(cpu <= 0.05)})",
            f"memory per idle connection {memory} KiB (≤ 64: {_verdict(memory <= 64)})",
        ]
        if row["clients"] == 5000:
            p99 = row["p99_ms"]
            verdicts.insert(0, f"p99 {p99:,.0f} ms (≤ 250: {_verdict(p99 <= 250)})")
        report.note(f"{row['clients']:,} clients: " + "; ".join(verdicts) + ".")
    report.note(
        "read = commit → the publishing node's board read (the frame's timestamp: tick, "
        "throttle, claim); fan-out = board read → receipt. Both clocks are this machine's."
    )
    for count, profile in profiles:
        report.profile(f"Where node A's CPU goes with {count:,} clients", profile)
    if profiles:
        report.note("Node A was sampled with py-spy during the windows: its CPU includes that.")
    plot = harness.RESULTS_DIR / f"{report.name}-{report.stamp}.png"
    harness.RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    plot_cdf(plot, curves, goal_ms=250)
    report.note(f"Latency CDF: {plot.relative_to(harness.ROOT)}")
    print(f"\nwritten: {report.write()}")


if __name__ == "__main__":
    main()
