"""Rate limits (DESIGN.md §4): fixed windows counted atomically, in Redis or in-process.

Most tests run against both stores (`store`); the Redis one needs a reachable server (the
`redis_url` fixture). Time is pinned by `clock` so that window edges are exact.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from django.core.cache import cache
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpResponse
from django.test import AsyncRequestFactory, RequestFactory
from django_redis import get_redis_connection
from hypothesis import given
from hypothesis import strategies as st
from rest_framework import status
from rest_framework.test import APIClient

from accounts.tests.helpers import ME_URL, TOKEN_URL, assert_error
from scoreboard import config, ratelimit
from scoreboard.config import Rate
from scoreboard.errors import RateLimited, RedisUnavailable
from scoreboard.middleware import RateLimitMiddleware
from scoreboard.ratelimit import (
    RateLimit,
    RateLimitState,
    enforce,
    hit,
    ip_identity,
    rate_limit_headers,
    recorded_states,
    reset_local_counters,
    score_update_limit,
)
from scoreboard.tests.test_startup import start

WINDOW_START = 1_800_000_000.0  # a whole number of minutes since the epoch
WINDOW = int(WINDOW_START) // 60
LIMIT = RateLimit("test", limit=3, window_seconds=60)
TOO_MANY = "Too many requests. Please wait before trying again."
BAD_TOKEN: dict[str, Any] = {"HTTP_AUTHORIZATION": "Bearer not-a-token"}

pytestmark = pytest.mark.django_db


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture(autouse=True)
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    """15 s into a minute window: 45 s until it resets."""
    fake = FakeClock(WINDOW_START + 15)
    monkeypatch.setattr(ratelimit, "clock", fake)
    return fake


@pytest.fixture
def redis_store(settings: Any, redis_url: str) -> Iterator[None]:
    """Counters in Redis, under a key prefix of their own that is deleted afterwards (no
    flush: other tests may share the database)."""
    settings.REDIS_URL = redis_url
    settings.CACHES = config.cache_config({"REDIS_URL": redis_url})
    settings.REDIS_KEY_PREFIX = f"test-{uuid.uuid4().hex}"
    yield
    connection = get_redis_connection("default")
    keys = list(connection.scan_iter(f"{settings.REDIS_KEY_PREFIX}:*"))
    if keys:
        connection.delete(*keys)


@pytest.fixture(params=["local", pytest.param("redis", marks=pytest.mark.redis)])
def store(request: pytest.FixtureRequest, settings: Any) -> str:
    """Each store in turn."""
    if request.param == "redis":
        request.getfixturevalue("redis_store")
    else:
        settings.REDIS_URL = None
    return str(request.param)


@pytest.fixture
def api_rate(settings: Any) -> None:
    """Three API requests per client IP per minute."""
    settings.SCOREBOARD_RATE_API_PER_IP = Rate(3, 60)


def hit_times(times: int, limit: RateLimit = LIMIT, identity: str = "203.0.113.9") -> list[Any]:
    return [hit([(limit, identity)])[0] for _ in range(times)]


def state(remaining: int, *, allowed: bool = True, reset: int = 45) -> RateLimitState:
    return RateLimitState("test", 3, remaining, reset, allowed)


def rate_limit_header_values(response: Any) -> tuple[str, str, str]:
    return (
        response["X-RateLimit-Limit"],
        response["X-RateLimit-Remaining"],
        response["X-RateLimit-Reset"],
    )


# --- counting ------------------------------------------------------------------------------


@pytest.mark.usefixtures("store")
def test_exactly_the_limit_passes_in_a_burst() -> None:
    # when four requests arrive at once against a limit of three
    states = hit_times(4)

    # then three pass, counting down, and the fourth is refused until the window ends
    assert states == [state(2), state(1), state(0), state(0, allowed=False)]


@pytest.mark.usefixtures("store")
def test_a_new_window_starts_from_zero(clock: FakeClock) -> None:
    # given a limit used up 15 s into a window
    hit_times(3)

    # when the next window begins
    clock.now = WINDOW_START + 60

    # then requests pass again, with the whole window ahead
    assert hit_times(1) == [state(2, reset=60)]


@pytest.mark.usefixtures("store")
def test_the_last_moment_of_a_window_still_counts_in_it(clock: FakeClock) -> None:
    # given a limit used up; when 44.5 s later the window has half a second left
    hit_times(3)
    clock.now = WINDOW_START + 59.5

    # then the request is refused, to retry in (rounded up) one second
    assert hit_times(1) == [state(0, allowed=False, reset=1)]


@pytest.mark.usefixtures("store")
def test_identities_are_counted_apart() -> None:
    # given one client that used up its limit
    hit_times(3, identity="203.0.113.9")

    # when another arrives
    # then it has its own budget
    assert hit_times(1, identity="198.51.100.20") == [state(2)]


@pytest.mark.usefixtures("store")
def test_a_refused_request_is_counted_nowhere() -> None:
    # given a client that used up its own limit, checked together with a shared one
    shared = RateLimit("shared", limit=10, window_seconds=60)
    for _ in range(3):
        hit([(LIMIT, "greedy"), (shared, "instance")])

    # when it keeps sending
    refused = hit([(LIMIT, "greedy"), (shared, "instance")])
    for _ in range(5):
        hit([(LIMIT, "greedy"), (shared, "instance")])

    # then it is refused, and its refused requests did not use the shared budget
    assert refused == [
        state(0, allowed=False),
        RateLimitState("shared", 10, 7, 45, allowed=True),
    ]
    assert hit([(shared, "instance")])[0].remaining == 6


def test_concurrent_hits_are_counted_exactly(store: str, settings: Any) -> None:
    # given a limit of 150, when 8 threads send 25 requests each at the same moment
    limit = RateLimit("test", limit=150, window_seconds=60)
    barrier = threading.Barrier(8)

    def client() -> list[bool]:
        barrier.wait()
        return [hit([(limit, "203.0.113.9")])[0].allowed for _ in range(25)]

    with ThreadPoolExecutor(max_workers=8) as pool:
        futures = [pool.submit(client) for _ in range(8)]
        outcomes = [allowed for future in futures for allowed in future.result()]

    # then exactly 150 pass and 50 are refused, and the counter says 150
    assert (outcomes.count(True), outcomes.count(False)) == (150, 50)
    if store == "redis":
        key = f"{settings.REDIS_KEY_PREFIX}:rl:test:203.0.113.9:{WINDOW}"
        assert get_redis_connection("default").get(key) == b"150"


# --- Redis keys ----------------------------------------------------------------------------


@pytest.mark.redis
@pytest.mark.usefixtures("redis_store")
def test_redis_counters_are_one_key_per_limit_identity_and_window(settings: Any) -> None:
    redis = get_redis_connection("default")
    user_id = str(uuid.uuid4())

    # when a score update and an API request are counted
    hit([(score_update_limit(), user_id), (LIMIT, "2001:db8::1")])

    # then each has its counter, expiring with its window
    prefix = settings.REDIS_KEY_PREFIX
    score_key = f"{prefix}:rl:score-update:{user_id}:{WINDOW}"
    api_key = f"{prefix}:rl:test:2001:db8::1:{WINDOW}"
    assert sorted(redis.scan_iter(f"{prefix}:*")) == sorted([score_key.encode(), api_key.encode()])
    assert (redis.get(score_key), redis.get(api_key)) == (b"1", b"1")
    assert 0 < redis.ttl(score_key) <= 60


@pytest.mark.redis
@pytest.mark.usefixtures("redis_store")
def test_identities_with_odd_characters_are_hashed_in_keys(settings: Any) -> None:
    redis = get_redis_connection("default")

    # when an identity holds spaces, key separators or glob characters
    hit([(LIMIT, "host name:*\n")])

    # then the key holds a digest of it instead
    (key,) = redis.scan_iter(f"{settings.REDIS_KEY_PREFIX}:*")
    assert key.decode().startswith(f"{settings.REDIS_KEY_PREFIX}:rl:test:sha256-")
    assert key.decode().endswith(f":{WINDOW}")
    assert "*" not in key.decode()


@pytest.mark.redis
def test_clearing_the_cache_forgets_redis_counters(settings: Any, redis_url: str) -> None:
    # conftest's _fresh_cache relies on this when the suite runs with REDIS_URL
    settings.REDIS_URL = redis_url
    settings.CACHES = config.cache_config({"REDIS_URL": redis_url})
    hit_times(3)

    cache.clear()

    assert hit_times(1) == [state(2)]


def test_resetting_local_counters_forgets_them(settings: Any) -> None:
    settings.REDIS_URL = None
    hit_times(3)

    reset_local_counters()

    assert hit_times(1) == [state(2)]


# --- enforce -------------------------------------------------------------------------------


@pytest.mark.usefixtures("store")
def test_enforce_records_the_states_and_refuses_past_the_limit(settings: Any) -> None:
    # given two score updates per minute
    settings.SCOREBOARD_RATE_SCORE_UPDATES = Rate(2, 60)
    request = RequestFactory().post("/api/v1/scores/update")
    checks = [(score_update_limit(), "user-1")]

    # when a third arrives
    enforce(request, checks, fail_closed=True)
    enforce(request, checks, fail_closed=True)
    with pytest.raises(RateLimited) as refused:
        enforce(request, checks, fail_closed=True)

    # then it is refused with the spec's message and when to retry
    assert refused.value.status_code == status.HTTP_429_TOO_MANY_REQUESTS
    assert refused.value.error_code == "RATE_LIMIT_EXCEEDED"
    assert str(refused.value.detail) == (
        "Too many score update requests. Please wait before trying again."
    )
    assert refused.value.retry_after == 45
    assert [s.remaining for s in recorded_states(request)] == [1, 0, 0]


@pytest.mark.usefixtures("store")
def test_the_headers_report_the_tightest_limit_recorded_on_the_request() -> None:
    # given a request checked by the middleware and then twice by its view
    request = RequestFactory().get("/api/v1/users/me")
    enforce(request, [(RateLimit("api-ip", 100, 60), "a")], fail_closed=False)
    enforce(request, [(RateLimit("per-user", 2, 60), "a")], fail_closed=False)
    enforce(request, [(RateLimit("per-minute", 1, 60), "a")], fail_closed=False)
    enforce(request, [(RateLimit("per-hour", 1, 3600), "a")], fail_closed=False)

    # then the headers describe the fewest remaining, and of those the later reset (the
    # client may not retry before it)
    assert rate_limit_headers(request) == {
        "X-RateLimit-Limit": "1",
        "X-RateLimit-Remaining": "0",
        "X-RateLimit-Reset": str(3600 - 15),
    }


def test_no_headers_without_a_recorded_limit() -> None:
    assert rate_limit_headers(RequestFactory().get("/healthz")) == {}


@pytest.mark.usefixtures("dead_redis")
def test_a_dead_redis_fails_closed_when_asked() -> None:
    request = RequestFactory().post("/api/v1/scores/update")

    with pytest.raises(RedisUnavailable) as refused:
        enforce(request, [(LIMIT, "user-1")], fail_closed=True)

    assert (refused.value.status_code, refused.value.retry_after) == (503, 5)
    assert recorded_states(request) == []


@pytest.mark.usefixtures("dead_redis")
def test_a_dead_redis_fails_open_when_asked(caplog: pytest.LogCaptureFixture) -> None:
    request = RequestFactory().get("/api/v1/users/me")

    with caplog.at_level(logging.WARNING, logger="scoreboard.ratelimit"):
        enforce(request, [(LIMIT, "user-1")], fail_closed=False)

    assert recorded_states(request) == []
    assert "Rate-limit store unavailable, not limiting the request" in caplog.text


# --- the API middleware --------------------------------------------------------------------


@pytest.mark.usefixtures("store", "api_rate")
def test_every_api_response_carries_the_rate_limit_headers(api_client: APIClient) -> None:
    response = api_client.get(ME_URL, **BAD_TOKEN)

    assert response.status_code == status.HTTP_401_UNAUTHORIZED
    assert rate_limit_header_values(response) == ("3", "2", "45")


@pytest.mark.usefixtures("store", "api_rate")
def test_bad_tokens_are_limited_like_any_request(api_client: APIClient) -> None:
    # given as many requests with a bad token as one address may send per minute
    answers = [api_client.get(ME_URL, **BAD_TOKEN) for _ in range(3)]
    assert [a.status_code for a in answers] == [401] * 3
    assert [a["X-RateLimit-Remaining"] for a in answers] == ["2", "1", "0"]

    # when one more arrives
    response = api_client.get(ME_URL, **BAD_TOKEN)

    # then it is refused before authentication, saying when to retry
    assert_error(
        response,
        status_code=status.HTTP_429_TOO_MANY_REQUESTS,
        code="RATE_LIMIT_EXCEEDED",
        message=TOO_MANY,
        retry_after=45,
    )
    assert response["Retry-After"] == "45"
    assert rate_limit_header_values(response) == ("3", "0", "45")


@pytest.mark.usefixtures("store", "api_rate")
def test_the_limit_lifts_when_the_window_ends(api_client: APIClient, clock: FakeClock) -> None:
    for _ in range(4):
        api_client.get(ME_URL, **BAD_TOKEN)

    clock.now = WINDOW_START + 60
    response = api_client.get(ME_URL, **BAD_TOKEN)

    assert response.status_code == status.HTTP_401_UNAUTHORIZED
    assert rate_limit_header_values(response) == ("3", "2", "60")


@pytest.mark.usefixtures("store", "api_rate")
def test_each_client_address_has_its_own_budget(api_client: APIClient) -> None:
    for _ in range(4):
        api_client.get(ME_URL, **BAD_TOKEN)

    response = api_client.get(ME_URL, REMOTE_ADDR="198.51.100.20", **BAD_TOKEN)

    assert response.status_code == status.HTTP_401_UNAUTHORIZED
    assert response["X-RateLimit-Remaining"] == "2"


@pytest.mark.usefixtures("store", "api_rate")
def test_an_ipv6_client_has_one_budget_for_its_whole_64(api_client: APIClient) -> None:
    # given three requests from one address of an IPv6 /64
    for _ in range(3):
        api_client.get(ME_URL, REMOTE_ADDR="2001:db8:1:2::1", **BAD_TOKEN)

    # when it hops to another address of the same block, and another block calls
    hopped = api_client.get(ME_URL, REMOTE_ADDR="2001:db8:1:2:ffff:ffff:ffff:ffff", **BAD_TOKEN)
    neighbour = api_client.get(ME_URL, REMOTE_ADDR="2001:db8:1:3::1", **BAD_TOKEN)

    # then the hop escapes nothing, and the other block has its own budget
    assert hopped.status_code == status.HTTP_429_TOO_MANY_REQUESTS
    assert neighbour.status_code == status.HTTP_401_UNAUTHORIZED


@pytest.mark.parametrize(
    ("ip", "identity"),
    [
        ("203.0.113.9", "203.0.113.9"),
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
        ("::1", "::/64"),
        ("", ""),
    ],
)
def test_per_ip_limits_count_ipv4_addresses_and_ipv6_64s(ip: str, identity: str) -> None:
    assert ip_identity(ip) == identity


@pytest.mark.usefixtures("store", "api_rate")
def test_behind_a_trusted_proxy_each_forwarded_client_has_its_own_budget(
    api_client: APIClient, settings: Any
) -> None:
    # given a trusted proxy that forwarded four requests from one client
    settings.SCOREBOARD_TRUSTED_PROXIES = config.trusted_proxies(
        {"SCOREBOARD_TRUSTED_PROXIES": "10.0.0.0/8"}
    )
    via_proxy: dict[str, Any] = {"REMOTE_ADDR": "10.0.0.2", **BAD_TOKEN}
    answers = [
        api_client.get(ME_URL, HTTP_X_FORWARDED_FOR="203.0.113.9", **via_proxy) for _ in range(4)
    ]

    # when it forwards a request from another client
    other = api_client.get(ME_URL, HTTP_X_FORWARDED_FOR="6.6.6.6, 198.51.100.20", **via_proxy)

    # then the first client was limited and the other was not
    assert [a.status_code for a in answers] == [401, 401, 401, 429]
    assert other.status_code == status.HTTP_401_UNAUTHORIZED


@pytest.mark.usefixtures("store", "api_rate")
def test_a_spoofed_forwarded_for_from_an_untrusted_peer_changes_nothing(
    api_client: APIClient, settings: Any
) -> None:
    settings.SCOREBOARD_TRUSTED_PROXIES = config.trusted_proxies(
        {"SCOREBOARD_TRUSTED_PROXIES": "10.0.0.0/8"}
    )

    answers = [
        api_client.get(ME_URL, HTTP_X_FORWARDED_FOR=f"198.51.100.{n}, 10.0.0.2", **BAD_TOKEN)
        for n in range(4)
    ]

    assert [a.status_code for a in answers] == [401, 401, 401, 429]


@pytest.mark.usefixtures("store")
def test_the_instance_limit_counts_every_client(api_client: APIClient, settings: Any) -> None:
    # given an instance that serves two API requests a minute
    settings.SCOREBOARD_RATE_API_PER_INSTANCE = Rate(2, 60)
    settings.SCOREBOARD_INSTANCE_ID = "node-a"

    # when three clients call it
    answers = [api_client.get(ME_URL, REMOTE_ADDR=f"198.51.100.{n}", **BAD_TOKEN) for n in range(3)]

    # then the third is refused by the instance limit
    assert [a.status_code for a in answers] == [401, 401, 429]
    assert rate_limit_header_values(answers[2]) == ("2", "0", "45")


@pytest.mark.redis
@pytest.mark.usefixtures("redis_store")
def test_the_api_counters_are_named_by_instance_id_and_client_address(
    api_client: APIClient, settings: Any
) -> None:
    settings.SCOREBOARD_INSTANCE_ID = "node-a"

    api_client.get(ME_URL, **BAD_TOKEN)
    api_client.get(ME_URL, REMOTE_ADDR="2001:db8:1:2::7", **BAD_TOKEN)

    redis = get_redis_connection("default")
    prefix = settings.REDIS_KEY_PREFIX
    assert redis.get(f"{prefix}:rl:api-instance:node-a:{WINDOW}") == b"2"
    assert redis.get(f"{prefix}:rl:api-ip:127.0.0.1:{WINDOW}") == b"1"
    assert redis.get(f"{prefix}:rl:api-ip:2001:db8:1:2::/64:{WINDOW}") == b"1"


@pytest.mark.usefixtures("store", "api_rate")
def test_an_unknown_api_route_is_counted_and_keeps_the_headers(api_client: APIClient) -> None:
    response = api_client.get("/api/v1/no-such-thing")

    assert response.status_code == status.HTTP_404_NOT_FOUND
    assert rate_limit_header_values(response) == ("3", "2", "45")


@pytest.mark.usefixtures("store", "api_rate")
def test_pages_outside_the_api_are_not_limited(api_client: APIClient) -> None:
    health = [api_client.get("/healthz") for _ in range(4)]

    response = api_client.get(ME_URL, **BAD_TOKEN)

    assert [h.status_code for h in health] == [200] * 4
    assert "X-RateLimit-Limit" not in health[0]
    assert response["X-RateLimit-Remaining"] == "2"


@pytest.mark.usefixtures("dead_redis")
def test_with_the_store_down_writes_fail_closed(api_client: APIClient) -> None:
    response = api_client.post(TOKEN_URL, {"username": "a", "password": "b"}, format="json")

    assert_error(
        response,
        status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
        code="REDIS_ERROR",
        message="Redis is unavailable. Retry later.",
        retry_after=5,
    )
    assert response["Retry-After"] == "5"
    assert "X-RateLimit-Limit" not in response


@pytest.mark.usefixtures("dead_redis")
def test_with_the_store_down_reads_fail_open(api_client: APIClient) -> None:
    response = api_client.get(ME_URL, **BAD_TOKEN)

    assert response.status_code == status.HTTP_401_UNAUTHORIZED
    assert "X-RateLimit-Limit" not in response


# --- in an async middleware stack ---------------------------------------------------------


@pytest.mark.usefixtures("api_rate")
async def test_in_an_async_stack_a_redis_round_trip_runs_off_the_event_loop(
    store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given the middleware in front of an async view (Django calls it so when every inner
    # middleware is async-capable), and a record of the threads the store is called from
    loop_thread = threading.get_ident()
    callers: list[int] = []
    real_hit = ratelimit.hit

    def recording_hit(checks: Any) -> list[RateLimitState]:
        callers.append(threading.get_ident())
        return real_hit(checks)

    async def view(request: Any) -> HttpResponse:
        return HttpResponse("ok")

    monkeypatch.setattr(ratelimit, "hit", recording_hit)
    middleware = RateLimitMiddleware(view)

    # when four requests go through it
    answers = [await middleware(AsyncRequestFactory().get(ME_URL)) for _ in range(4)]

    # then the limit applies as in a sync stack
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert [a["X-RateLimit-Remaining"] for a in answers] == ["2", "1", "0", "0"]
    assert answers[3]["Retry-After"] == "45"
    # and Redis was called from a worker thread; the in-process store costs no thread hop
    expected_on_loop = store == "local"
    assert [caller == loop_thread for caller in callers] == [expected_on_loop] * 4


# --- the rate setting ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("10/min", Rate(10, 60)),
        ("1/sec", Rate(1, 1)),
        ("5000/hour", Rate(5000, 3600)),
        ("3/day", Rate(3, 86400)),
        (" 20/min ", Rate(20, 60)),
        ("", Rate(7, 60)),
    ],
)
def test_rates_are_n_per_sec_min_hour_or_day(value: str, expected: Rate) -> None:
    assert config.rate({"SCOREBOARD_X": value}, "SCOREBOARD_X", "7/min") == expected


@pytest.mark.parametrize(
    "value",
    [
        *("10/m", "10/minute", "10/MIN", "10 / min", "0/min", "-1/min", "1.5/min", "ten/min"),
        *("10", "10/min/2", "\uff11\uff10/min", "1000000000/min"),
    ],
)
def test_anything_else_refuses_to_start(value: str) -> None:
    with pytest.raises(ImproperlyConfigured, match="SCOREBOARD_X"):
        config.rate({"SCOREBOARD_X": value}, "SCOREBOARD_X", "7/min")


@pytest.mark.parametrize(
    ("name", "value"),
    [("SCOREBOARD_RATE_API_PER_IP", "lots"), ("SCOREBOARD_TRUSTED_PROXIES", "proxy.internal")],
)
def test_the_service_refuses_to_start_with_an_unusable_limit_setting(name: str, value: str) -> None:
    result = start(**{name: value})

    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert name in result.stderr


def test_the_default_limits_are_the_specified_ones() -> None:
    defaults = {
        "SCOREBOARD_RATE_SCORE_UPDATES": ("10/min", Rate(10, 60)),
        "SCOREBOARD_RATE_API_PER_IP": ("100/min", Rate(100, 60)),
        "SCOREBOARD_RATE_API_PER_INSTANCE": ("10000/min", Rate(10_000, 60)),
        "SCOREBOARD_AUTH_RATE": ("20/min", Rate(20, 60)),
    }
    for name, (default, expected) in defaults.items():
        assert config.rate({}, name, default) == expected


@given(
    limit=st.integers(min_value=1, max_value=999_999_999),
    unit=st.sampled_from(sorted(config.RATE_PERIODS)),
)
def test_every_well_formed_rate_parses(limit: int, unit: str) -> None:
    assert config.rate({"R": f"{limit}/{unit}"}, "R", "1/min") == Rate(
        limit, config.RATE_PERIODS[unit]
    )


@given(text=st.text(max_size=20) | st.from_regex(r"-?[0-9]{1,11}/[a-zA-Z]{1,5}", fullmatch=True))
def test_any_text_is_a_rate_written_exactly_so_or_refused(text: str) -> None:
    try:
        parsed = config.rate({"R": text}, "R", "1/min")
    except ImproperlyConfigured:
        return
    unit = {seconds: name for name, seconds in config.RATE_PERIODS.items()}[parsed.window_seconds]
    assert f"{parsed.limit}/{unit}" == (text.strip() or "1/min")
