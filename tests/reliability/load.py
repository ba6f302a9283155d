"""Clients that keep scoring, the load under which faults are injected, and clients that
listen to the live board as a real one does."""

from __future__ import annotations

import asyncio
import threading
import time
import urllib.error
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack
from dataclasses import dataclass, replace
from typing import Any

from conftest import TEST_PASSWORD
from realtime.tests.cluster import CHANNEL, WAIT_SECONDS, Cluster, Earned, LiveSocket, Node, Player
from scoreboard.tests.edge import send
from scoreboard.tests.metric_samples import parse_scrape, sample
from scoreboard.tests.served import manage
from tests.reliability.ledger import Outcomes

ACTION = "ACHIEVEMENT_UNLOCK"  # no minimum duration, no daily cap
# Lets a scenario read a node's /metrics (SCOREBOARD_METRICS_TOKEN).
METRICS_TOKEN = "reliability-metrics-" + "m" * 20
# A refused connection, a reset or a timeout: the request may or may not have been applied.
NO_ANSWER = 0


def live_connections(node: Node) -> int:
    """The WebSockets the node counts as open (its node must run with METRICS_TOKEN)."""
    status, _, body = send(
        node.base_url, "GET", "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}
    )
    assert status == 200
    return int(
        sample(parse_scrape(body.decode()), "scoreboard_live_connections", transport="websocket")
    )


def moderator(cluster: Cluster, stem: str) -> Player:
    """A new player whom an operator makes a moderator; their token carries the role."""
    player = cluster.register(cluster.a, stem)
    manage(
        cluster.env,
        "shell",
        "-c",
        "from accounts.models import Role, User; from accounts.services import "
        f"user_role_groups_sync; user = User.objects.get(pk='{player.user_id}'); "
        "user.role = Role.MODERATOR; user.save(); user_role_groups_sync(user=user)",
    )
    status, body = cluster.a.call(
        "POST", "/api/v1/auth/token", {"username": player.username, "password": TEST_PASSWORD}
    )
    assert status == 200, body
    return replace(player, access=body["data"]["accessToken"])


def call_or_no_answer(call: Callable[[], tuple[int, Any]]) -> tuple[int, Any]:
    try:
        return call()
    except (urllib.error.URLError, OSError) as error:
        return NO_ANSWER, repr(error)


def earn_or_refusal(cluster: Cluster, node: Node, player: Player) -> tuple[int, Earned | Any]:
    return call_or_no_answer(lambda: cluster.earn(node, player, ACTION))


def earn_many(cluster: Cluster, node: Node, players: list[Player], count: int) -> list[Earned]:
    """`count` action tokens with their signed updates, for `players` in turn (8 at a time)."""
    with ThreadPoolExecutor(max_workers=8) as pool:
        earned = list(
            pool.map(
                lambda turn: earn_or_refusal(cluster, node, players[turn % len(players)]),
                range(count),
            )
        )
    refused = [(status, item) for status, item in earned if not isinstance(item, Earned)]
    assert refused == [], refused[:3]
    return [item for _, item in earned]


def spend_and_record(
    cluster: Cluster, node: Node, earned: Earned, outcomes: Outcomes, *, allowed: tuple[int, ...]
) -> int:
    status, body = call_or_no_answer(lambda: cluster.spend(node, earned))
    outcomes.record(
        status, body, user_id=earned.player.user_id, action_id=earned.action_id, allowed=allowed
    )
    return status


class SteadyLoad:
    """`clients` threads, each completing an action and spending its token on each of `nodes`
    in turn (node a and node b, unless given), until stopped. Completions refused with an
    allowed status count as rejected requests too."""

    def __init__(
        self,
        cluster: Cluster,
        players: list[Player],
        *,
        nodes: tuple[Node, ...] = (),
        clients: int = 4,
        allowed: tuple[int, ...] = (503,),
        pause_seconds: float = 0.02,
    ) -> None:
        self.cluster = cluster
        self.players = players
        self.nodes = nodes or (cluster.a, cluster.b)
        self.allowed = allowed
        self.pause_seconds = pause_seconds
        self.outcomes = Outcomes()
        self.completions_refused: dict[int, int] = {}
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=clients)
        self._futures = [self._pool.submit(self._client, number) for number in range(clients)]

    def _client(self, number: int) -> None:
        turn = number
        while not self._stop.is_set():
            node = self.nodes[turn % len(self.nodes)]
            player = self.players[turn % len(self.players)]
            turn += 1
            status, earned = earn_or_refusal(self.cluster, node, player)
            if isinstance(earned, Earned):
                spend_and_record(self.cluster, node, earned, self.outcomes, allowed=self.allowed)
            else:
                with self._lock:
                    self.completions_refused[status] = self.completions_refused.get(status, 0) + 1
                if status not in self.allowed:
                    self.outcomes.unexpected.append((status, earned))
            time.sleep(self.pause_seconds)

    @property
    def refused(self) -> int:
        """Completions refused: attempts that never got as far as a score update."""
        return sum(self.completions_refused.values())

    def stop(self) -> Outcomes:
        self._stop.set()
        for future in self._futures:
            future.result(timeout=60)
        self._pool.shutdown()
        return self.outcomes


@dataclass
class Listener:
    """A live board on one node, as a client keeps it: reconnected when the server closes it."""

    node: Node
    player: Player
    socket: LiveSocket
    reconnections: int = 0

    @classmethod
    async def open(
        cls, cluster: Cluster, stack: AsyncExitStack, node: Node, player: Player
    ) -> Listener:
        socket = await cluster.socket(stack, f"{node.ws_url}?ticket={node.ticket(player)}")
        await cluster.subscribed(socket)
        return cls(node, player, socket)

    def shows(self, score: int) -> bool:
        return any(
            row["userId"] == self.player.user_id and row["score"] >= score
            for frame in self.socket.frames
            if frame.event == "leaderboard.update"
            for row in frame.data["leaderboard"]
        )

    async def hears(
        self, cluster: Cluster, stack: AsyncExitStack, score: int, *, resync: bool = True
    ) -> None:
        """Wait until the board shows the player at `score`. With `resync`, a client that
        hears nothing for a while re-subscribes (as it does on a gap in `seq`), and one whose
        socket the server closed connects again; without, the socket must hear it as it is."""
        deadline = time.monotonic() + WAIT_SECONDS
        resync_at = time.monotonic() + WAIT_SECONDS / 2 if resync else 0.0
        while not self.shows(score):
            if self.socket.reader.done() and resync:
                reopened = await Listener.open(cluster, stack, self.node, self.player)
                self.socket = reopened.socket
                self.reconnections += 1
            elif resync_at and time.monotonic() > resync_at:
                await self.socket.send("subscribe", {"channel": CHANNEL})
                resync_at = 0.0
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"node {self.node.name}: never showed {score}\n{cluster.logs()}"
                )
            await asyncio.sleep(0.05)


async def scored(cluster: Cluster, node: Node, player: Player, outcomes: Outcomes) -> int:
    """Score once, record it (it must be accepted); the player's new total."""
    status, earned = await asyncio.to_thread(cluster.earn, node, player, ACTION)
    assert isinstance(earned, Earned), (status, earned)
    status, body = await asyncio.to_thread(cluster.spend, node, earned)
    outcomes.record(status, body, user_id=player.user_id, action_id=earned.action_id, allowed=())
    assert status == 200, body
    return int(body["data"]["newScore"])
