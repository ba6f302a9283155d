"""`/ws/leaderboard` through the whole ASGI application (origin check, routing, consumer),
in the embedded mode and with Redis."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from rest_framework_simplejwt.tokens import AccessToken

from accounts.services import token_pair_for_credentials
from conftest import DEAD_REDIS_URL, TEST_PASSWORD
from realtime import auth
from realtime.frames import Batch, Frame
from realtime.hub import running_hub
from realtime.tests.conftest import index_built
from scoreboard import config
from scoreboard.asgi import application
from scoreboard.config import Rate
from scoring.tests.fixtures import GameServerKey, Player

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("live_hub")]

TOP10 = "leaderboard.top10"
WAIT = 10


@pytest.fixture(autouse=True)
def _fast_live(settings: Any, live_mode: str) -> None:
    settings.SCOREBOARD_BROADCAST_INTERVAL_MS = 50
    settings.SCOREBOARD_RATE_SCORE_UPDATES = Rate(1000, 60)
    if live_mode == "redis":
        index_built()


def access_token(player: Player, lifetime: timedelta | None = None) -> str:
    token = token_pair_for_credentials(username=player.user.username, password=TEST_PASSWORD)
    if lifetime is None:
        return token.access
    short = AccessToken(token.access)  # type: ignore[arg-type]
    short.set_exp(lifetime=lifetime)
    return str(short)


def ticket(player: Player) -> str:
    response = player.client.post("/api/v1/realtime/ticket")
    assert response.status_code == 201, response.content
    return str(response.json()["data"]["ticket"])


class Socket:
    def __init__(self, communicator: WebsocketCommunicator, accepted: bool, detail: Any) -> None:
        self.communicator = communicator
        self.accepted = accepted
        self.detail = detail

    async def send(self, event: str, **data: Any) -> None:
        await self.communicator.send_json_to({"event": event, "data": data})

    async def receive(self) -> dict[str, Any]:
        return dict(await self.communicator.receive_json_from(timeout=WAIT))

    async def receive_event(self, event: str) -> dict[str, Any]:
        """The data of the next `event` frame, skipping others."""
        while True:
            frame = await self.receive()
            if frame["event"] == event:
                return dict(frame["data"])

    async def subscribe(self, channel: str = TOP10) -> dict[str, Any]:
        await self.send("subscribe", channel=channel)
        snapshot = await self.receive_event("leaderboard.update")
        assert snapshot["snapshot"] is True
        return snapshot

    async def close_code(self) -> int:
        """The code the server closed with, past any frames still on their way."""
        while True:
            output = await self.communicator.receive_output(timeout=WAIT)
            if output["type"] == "websocket.close":
                return int(output["code"])

    async def nothing_more(self) -> bool:
        return bool(await self.communicator.receive_nothing(timeout=0.3))


@pytest.fixture
async def open_socket() -> AsyncIterator[Callable[..., Any]]:
    opened: list[WebsocketCommunicator] = []

    async def open_(
        query: str = "", *, subprotocols: list[str] | None = None, origin: str | None = None
    ) -> Socket:
        headers = [(b"origin", origin.encode())] if origin else []
        communicator = WebsocketCommunicator(
            application, "/ws/leaderboard" + query, headers=headers, subprotocols=subprotocols
        )
        opened.append(communicator)
        accepted, detail = await communicator.connect(timeout=WAIT)
        return Socket(communicator, accepted, detail)

    yield open_
    for communicator in opened:
        await communicator.disconnect()


@pytest.fixture
async def ann(make_player: Callable[..., Player]) -> Player:
    return await database_sync_to_async(make_player)(username="ann", country="FR")


@pytest.fixture
def score(game_server: GameServerKey) -> Callable[[Player], Any]:
    async def score_(player: Player) -> None:
        response = await database_sync_to_async(player.score_action)(game_server)
        assert response.status_code == 200, response.content

    return score_


# Credentials


async def test_a_ticket_opens_one_connection_once(open_socket: Any, ann: Player) -> None:
    issued = await database_sync_to_async(ticket)(ann)
    socket = await open_socket(f"?ticket={issued}")
    assert socket.accepted
    snapshot = await socket.subscribe()
    assert snapshot == {
        "channel": TOP10,
        "seq": 0,
        "snapshot": True,
        "leaderboard": [],
        "timestamp": snapshot["timestamp"],
    }
    again = await open_socket(f"?ticket={issued}")
    assert await again.close_code() == 4401


async def test_a_refused_credential_is_logged_as_a_security_event(
    open_socket: Any, ann: Player, caplog: pytest.LogCaptureFixture
) -> None:
    issued = await database_sync_to_async(ticket)(ann)
    assert (await open_socket(f"?ticket={issued}")).accepted

    with caplog.at_level(logging.INFO, logger="scoreboard.security"):
        assert await (await open_socket(f"?ticket={issued}")).close_code() == 4401

    [event] = [record for record in caplog.records if record.name == "scoreboard.security"]
    assert event.levelname == "WARNING"
    assert (event.event, event.credential) == ("live_credential_refused", "ticket")  # type: ignore[attr-defined]
    assert event.getMessage() == "live_credential_refused: unknown, used or expired ticket"


async def test_a_ticket_is_stored_only_as_a_digest(ann: Player) -> None:
    from django.core.cache import cache

    issued = await database_sync_to_async(ticket)(ann)
    assert cache.get("live-ticket:" + issued) is None
    assert await database_sync_to_async(auth.ticket_redeem)(issued) is not None
    assert await database_sync_to_async(auth.ticket_redeem)(issued) is None


async def test_the_ticket_endpoint_needs_a_signed_in_user(api_client: Any) -> None:
    response = await database_sync_to_async(api_client.post)("/api/v1/realtime/ticket")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "UNAUTHORIZED"


async def test_the_bearer_subprotocol_carries_the_jwt(open_socket: Any, ann: Player) -> None:
    token = await database_sync_to_async(access_token)(ann)
    socket = await open_socket(subprotocols=["bearer", token])
    assert (socket.accepted, socket.detail) == (True, "bearer")
    await socket.subscribe()


@pytest.mark.parametrize(
    ("query", "subprotocols"),
    [
        ("", None),
        ("?ticket=made-up", None),
        ("?ticket=", None),
        ("", ["bearer", "not-a-jwt"]),
        ("", ["bearer"]),
        ("?token={token}", None),  # refused unless settings allow query tokens
    ],
)
async def test_a_bad_or_missing_credential_closes_4401_before_anything_streams(
    open_socket: Any, ann: Player, query: str, subprotocols: list[str] | None
) -> None:
    token = await database_sync_to_async(access_token)(ann)
    socket = await open_socket(query.format(token=token), subprotocols=subprotocols)
    assert await socket.close_code() == 4401


async def test_an_expired_jwt_is_refused(open_socket: Any, ann: Player) -> None:
    token = await database_sync_to_async(access_token)(ann, timedelta(seconds=-1))
    socket = await open_socket(subprotocols=["bearer", token])
    assert await socket.close_code() == 4401


async def test_query_tokens_work_only_where_settings_allow_them(
    open_socket: Any, ann: Player, settings: Any
) -> None:
    settings.SCOREBOARD_WS_ALLOW_QUERY_TOKEN = True
    token = await database_sync_to_async(access_token)(ann)
    socket = await open_socket(f"?token={token}")
    assert socket.accepted
    await socket.subscribe()


async def test_a_foreign_browser_origin_is_refused_at_the_handshake(
    open_socket: Any, ann: Player
) -> None:
    issued = await database_sync_to_async(ticket)(ann)
    socket = await open_socket(f"?ticket={issued}", origin="https://evil.example")
    assert socket.accepted is False


async def test_a_cors_allowed_origin_may_open_a_socket(
    open_socket: Any, ann: Player, settings: Any
) -> None:
    settings.CORS_ALLOWED_ORIGINS = ["https://game.example"]
    issued = await database_sync_to_async(ticket)(ann)
    socket = await open_socket(f"?ticket={issued}", origin="https://game.example")
    assert socket.accepted
    await socket.subscribe()


async def test_an_allowed_origin_and_no_origin_both_connect(open_socket: Any, ann: Player) -> None:
    for origin in ("http://localhost:8000", None):
        issued = await database_sync_to_async(ticket)(ann)
        socket = await open_socket(f"?ticket={issued}", origin=origin)
        assert socket.accepted
        await socket.subscribe()


async def test_the_connection_closes_when_its_jwt_expires(open_socket: Any, ann: Player) -> None:
    token = await database_sync_to_async(access_token)(ann, timedelta(seconds=2))
    socket = await open_socket(subprotocols=["bearer", token])
    await socket.subscribe()
    assert await socket.close_code() == 4401


async def test_a_deactivated_user_is_closed_within_one_heartbeat(
    open_socket: Any, ann: Player, settings: Any
) -> None:
    settings.SCOREBOARD_WS_HEARTBEAT_SECONDS = 1
    socket = await open_socket(f"?ticket={await database_sync_to_async(ticket)(ann)}")
    await socket.subscribe()
    ann.user.is_active = False
    await database_sync_to_async(ann.user.save)()
    assert await socket.close_code() == 4401


async def test_one_heartbeat_rechecks_every_connection_and_closes_only_the_refused(
    open_socket: Any,
    ann: Player,
    make_player: Callable[..., Player],
    settings: Any,
) -> None:
    settings.SCOREBOARD_WS_HEARTBEAT_SECONDS = 1
    bob = await database_sync_to_async(make_player)(username="bob")
    ann_socket = await open_socket(f"?ticket={await database_sync_to_async(ticket)(ann)}")
    bob_socket = await open_socket(f"?ticket={await database_sync_to_async(ticket)(bob)}")
    await ann_socket.subscribe()
    await bob_socket.subscribe()

    ann.user.set_password("a different long passphrase")
    await database_sync_to_async(ann.user.save)()

    assert await ann_socket.close_code() == 4401
    await bob_socket.send("ping")
    assert (await bob_socket.receive())["event"] == "pong"


# Client messages


async def test_ping_gets_pong(open_socket: Any, ann: Player) -> None:
    socket = await open_socket(f"?ticket={await database_sync_to_async(ticket)(ann)}")
    await socket.send("ping")
    assert (await socket.receive())["event"] == "pong"


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        ('{"event": "subscribe", "data": {"channel": "leaderboard.top11"}}', "Unknown channel."),
        ('{"event": "subscribe", "data": {"channel": 10}}', "Unknown channel."),
        ('{"event": "subscribe", "data": {}}', "Unknown channel."),
        ('{"event": "unsubscribe", "data": {"channel": "x"}}', "Unknown channel."),
        ('{"event": "dance", "data": {}}', "Unknown event: use subscribe, unsubscribe or ping."),
        ("not json", None),
        ("[1, 2]", None),
        ('{"event": 1}', None),
        ('{"event": "ping", "data": []}', None),
        ('{"event": "ping", "data": {}, "extra": 1}', None),
    ],
)
async def test_a_malformed_frame_or_unknown_channel_gets_an_error_and_the_socket_stays(
    open_socket: Any, ann: Player, frame: str, message: str | None
) -> None:
    socket = await open_socket(f"?ticket={await database_sync_to_async(ticket)(ann)}")
    await socket.communicator.send_to(text_data=frame)
    error = await socket.receive()
    assert error["event"] == "error"
    assert error["data"]["code"] == "INVALID_INPUT"
    if message:
        assert error["data"]["message"] == message
    await socket.subscribe()


async def test_binary_frames_are_refused_politely(open_socket: Any, ann: Player) -> None:
    socket = await open_socket(f"?ticket={await database_sync_to_async(ticket)(ann)}")
    await socket.communicator.send_to(bytes_data=b"\x00\x01")
    assert (await socket.receive())["event"] == "error"
    await socket.subscribe()


async def test_a_frame_over_64_kib_closes_4429(open_socket: Any, ann: Player) -> None:
    socket = await open_socket(f"?ticket={await database_sync_to_async(ticket)(ann)}")
    await socket.communicator.send_to(text_data=json.dumps({"event": "ping", "x": "a" * 65536}))
    assert await socket.close_code() == 4429


async def test_more_client_messages_than_the_rate_closes_4429(
    open_socket: Any, ann: Player, settings: Any
) -> None:
    settings.SCOREBOARD_WS_CLIENT_MESSAGE_RATE = Rate(5, 60)
    socket = await open_socket(f"?ticket={await database_sync_to_async(ticket)(ann)}")
    for _ in range(5):
        await socket.send("ping")
        assert (await socket.receive())["event"] == "pong"
    await socket.send("ping")
    assert await socket.close_code() == 4429


async def test_subscriptions_per_connection_are_bounded(
    open_socket: Any, ann: Player, settings: Any
) -> None:
    settings.SCOREBOARD_WS_MAX_SUBSCRIPTIONS = 2
    socket = await open_socket(f"?ticket={await database_sync_to_async(ticket)(ann)}")
    await socket.subscribe("leaderboard.top10")
    await socket.subscribe("leaderboard.daily.top10")
    await socket.send("subscribe", channel="leaderboard.weekly.top10")
    error = await socket.receive()
    assert error["event"] == "error"
    await socket.subscribe("leaderboard.top10")  # one already held is fine


# Broadcasts


async def test_a_score_reaches_subscribers_with_seq_rank_changes_and_a_new_leader(
    open_socket: Any, ann: Player, make_player: Callable[..., Player], score: Any
) -> None:
    socket = await open_socket(f"?ticket={await database_sync_to_async(ticket)(ann)}")
    country = await open_socket(f"?ticket={await database_sync_to_async(ticket)(ann)}")
    first = await socket.subscribe()
    await country.subscribe("leaderboard.country.FR.top10")

    await score(ann)
    update = await socket.receive_event("leaderboard.update")
    assert update["seq"] == first["seq"] + 1
    assert update["snapshot"] is False
    assert [(r["username"], r["rank"], r["score"]) for r in update["leaderboard"]] == [
        ("ann", 1, 100)
    ]
    french = await country.receive_event("leaderboard.update")
    assert [r["username"] for r in french["leaderboard"]] == ["ann"]

    bob = await database_sync_to_async(make_player)(username="bob", country="DE")
    await score(bob)
    await score(bob)
    frames: list[dict[str, Any]] = []
    while not any(frame["event"] == "leaderboard.new_leader" for frame in frames):
        frames.append(await socket.receive())
    updates = [frame["data"] for frame in frames if frame["event"] == "leaderboard.update"]
    assert [update["seq"] for update in updates] == list(
        range(first["seq"] + 2, first["seq"] + 2 + len(updates))
    )
    assert [(r["username"], r["score"]) for r in updates[-1]["leaderboard"]] == [
        ("bob", 200),
        ("ann", 100),
    ]
    moves = {
        frame["data"]["username"]: (frame["data"]["oldRank"], frame["data"]["newRank"])
        for frame in frames
        if frame["event"] == "leaderboard.rank_change"
    }
    assert moves["ann"] == (1, 2)
    leader = next(frame["data"] for frame in frames if frame["event"] == "leaderboard.new_leader")
    assert (leader["username"], leader["previousLeader"]["username"]) == ("bob", "ann")
    # bob is not French: the country channel stays quiet.
    assert await country.nothing_more()


async def test_a_burst_ends_with_its_final_state(
    open_socket: Any, ann: Player, score: Any, settings: Any
) -> None:
    settings.SCOREBOARD_BROADCAST_INTERVAL_MS = 400
    socket = await open_socket(f"?ticket={await database_sync_to_async(ticket)(ann)}")
    await socket.subscribe()
    for _ in range(6):
        await score(ann)
    seen: list[dict[str, Any]] = []
    while not seen or seen[-1]["leaderboard"][0]["score"] < 600:
        seen.append(await socket.receive_event("leaderboard.update"))
    # Six changes, throttled: fewer updates than changes, seq one apart, the last one final.
    assert len(seen) < 6
    assert [update["seq"] for update in seen] == list(range(1, len(seen) + 1))
    assert await socket.nothing_more()


async def test_subscribing_again_gets_a_fresh_snapshot(
    open_socket: Any, ann: Player, score: Any
) -> None:
    socket = await open_socket(f"?ticket={await database_sync_to_async(ticket)(ann)}")
    await socket.subscribe()
    await score(ann)
    update = await socket.receive_event("leaderboard.update")
    snapshot = await socket.subscribe()
    assert snapshot["seq"] == update["seq"]
    assert snapshot["leaderboard"] == update["leaderboard"]


async def test_unsubscribed_channels_go_quiet_and_the_hub_lets_go(
    open_socket: Any, ann: Player, score: Any
) -> None:
    socket = await open_socket(f"?ticket={await database_sync_to_async(ticket)(ann)}")
    await socket.subscribe()
    assert running_hub().subscriber_count(TOP10) == 1
    await socket.send("unsubscribe", channel=TOP10)
    assert await socket.receive() == {"event": "unsubscribed", "data": {"channel": TOP10}}
    assert running_hub().subscriber_count() == 0
    await score(ann)
    assert await socket.nothing_more()


async def test_closed_sockets_leave_nothing_behind(open_socket: Any, ann: Player) -> None:
    sockets = []
    for _ in range(10):
        socket = await open_socket(f"?ticket={await database_sync_to_async(ticket)(ann)}")
        await socket.subscribe()
        await socket.subscribe("leaderboard.daily.top10")
        sockets.append(socket)
    assert running_hub().subscriber_count() == 20
    for socket in sockets:
        await socket.communicator.disconnect()
    assert running_hub().subscriber_count() == 0


async def test_a_client_that_falls_behind_is_closed_4408(
    open_socket: Any, ann: Player, settings: Any
) -> None:
    settings.SCOREBOARD_LIVE_SEND_QUEUE = 2
    socket = await open_socket(f"?ticket={await database_sync_to_async(ticket)(ann)}")
    snapshot = await socket.subscribe()
    hub = running_hub()
    frame = Frame.of("leaderboard.update", {"channel": TOP10, "seq": 0})
    # Delivered back to back, with no chance for the socket to write in between.
    for seq in range(snapshot["seq"] + 1, snapshot["seq"] + 10):
        hub.dispatch(Batch(TOP10, seq, [frame]))
    assert await socket.close_code() == 4408
    assert hub.subscriber_count() == 0


async def test_broadcasts_wait_behind_the_snapshot(ann: Player) -> None:
    """What the hub hands over while a snapshot is read comes after it, older seqs dropped."""
    from realtime.boards import live_channel
    from realtime.hub import Mailbox

    channel = live_channel(TOP10)
    assert channel is not None
    mailbox = Mailbox(on_overflow=lambda: None)
    frame = Frame.of("leaderboard.update", {})

    async def read(_: Any) -> Batch:
        mailbox.deliver(Batch(TOP10, 4, [frame]))  # published before the snapshot was read
        mailbox.deliver(Batch(TOP10, 6, [frame]))
        return Batch(TOP10, 5, [frame])

    await mailbox.deliver_snapshot(channel, read)
    assert [mailbox.queue.get_nowait().seq for _ in range(mailbox.queue.qsize())] == [5, 6]


# Outages


async def test_a_board_that_cannot_be_read_is_an_error_and_the_socket_stays(
    open_socket: Any, ann: Player, settings: Any
) -> None:
    token = await database_sync_to_async(access_token)(ann)
    socket = await open_socket(subprotocols=["bearer", token])
    # The broadcast state is in Redis, and Redis is unreachable.
    settings.REDIS_URL = DEAD_REDIS_URL
    settings.CACHES = config.cache_config({"REDIS_URL": DEAD_REDIS_URL})
    await socket.send("subscribe", channel=TOP10)
    error = await socket.receive()
    assert error["event"] == "error"
    assert error["data"]["code"] == "REDIS_ERROR"
    assert running_hub().subscriber_count() == 0
    await socket.send("ping")
    assert (await socket.receive())["event"] == "pong"


async def test_tickets_that_cannot_be_checked_close_with_try_again_later(
    open_socket: Any, ann: Player, settings: Any
) -> None:
    issued = await database_sync_to_async(ticket)(ann)
    settings.CACHES = config.cache_config({"REDIS_URL": DEAD_REDIS_URL})
    socket = await open_socket(f"?ticket={issued}")
    assert await socket.close_code() == 1013


# Moderation and privacy reach the live boards too


async def test_a_rejected_score_and_a_hidden_player_are_broadcast(
    open_socket: Any,
    ann: Player,
    make_player: Callable[..., Player],
    make_moderator: Callable[..., Any],
    score: Any,
) -> None:
    from scoring.models import ScoreUpdate
    from scoring.moderation import score_update_reject

    bob = await database_sync_to_async(make_player)(username="bob")
    moderator = await database_sync_to_async(make_moderator)(username="mod")
    socket = await open_socket(f"?ticket={await database_sync_to_async(ticket)(ann)}")
    await socket.subscribe()
    await score(ann)
    await score(bob)
    await score(bob)
    update = await socket.receive_event("leaderboard.update")
    while [r["username"] for r in update["leaderboard"]] != ["bob", "ann"]:
        update = await socket.receive_event("leaderboard.update")

    def reject_bobs_first_score() -> None:
        first = ScoreUpdate.objects.filter(user=bob.user).order_by("created_at").first()
        assert first is not None
        score_update_reject(update_id=first.pk, moderator=moderator, reason="test")

    await database_sync_to_async(reject_bobs_first_score)()
    reverted = await socket.receive_event("leaderboard.update")
    assert reverted["seq"] == update["seq"] + 1
    assert [(r["username"], r["score"]) for r in reverted["leaderboard"]] == [
        ("ann", 100),
        ("bob", 100),
    ]

    ann.user.hide_from_leaderboards = True
    await database_sync_to_async(ann.user.save)()
    hidden = await socket.receive_event("leaderboard.update")
    assert hidden["seq"] == reverted["seq"] + 1
    assert [r["username"] for r in hidden["leaderboard"]] == ["bob"]
