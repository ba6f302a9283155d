"""Board reads by board size: top-10, the caller's rank (`currentUser`) and around-me at 10k,
100k and 1M players, on the Redis backend and on the SQL backend.

Per size the players and their all-time totals are loaded with COPY (not timed into the
figures), the Redis index is rebuilt with `manage.py rebuild_leaderboards`, and viewers at the
top, the middle and the bottom of the board get access tokens. Then, per backend, an app node
serves and a load generator in another process reads each endpoint; the CPU time of the node,
of the PostgreSQL server and of the Redis server is divided by the requests served. The same-run
baseline is the backend's own store calls on the same board, without the service:
redis-benchmark of the Lua scripts the Redis backend runs, and pgbench of the SQL the SQL
backend sends (both captured from the app). `--quick` shortens every run.

    python -m bench.board_reads [--quick] [--sizes 10000,100000,1000000] [--duration SECONDS]
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import functools
import json
import multiprocessing
import os
import random
import subprocess
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
from redis import Redis

from bench.harness import (
    DATABASE_URL,
    REDIS_URL,
    SERVERS,
    Node,
    Profile,
    Report,
    fresh_database,
    latency_summary_ms,
    manage,
    profiled,
    served_node,
    tree_cpu_seconds,
)
from scoring.periods import ALL_TIME_START, DEFAULT_BOARD, Period

DATABASE_NAME = "bench_boards"
DEFAULT_SIZES = (10_000, 100_000, 1_000_000)
CLIENTS = 32
# Processes per node: uvicorn one per core; gunicorn's sync workers two per core, as the API
# nodes run them (docker/gunicorn.conf.py).
WORKERS = {"uvicorn": 2, "gunicorn": 4}
VIEWERS_PER_DEPTH = 100
DEPTHS = ("top", "middle", "bottom")
# Requests are never refused by a rate limit here: the limits are not what is measured.
UNLIMITED_RATE = "100000000/min"
REQUEST_TIMEOUT_SECONDS = 60
COPY_CHUNK_ROWS = 50_000
TOP_10_GOAL_REQUESTS_PER_SECOND = 2500
SIZE_RATIO_GOAL = 1.3
SEED_EPOCH = datetime(2025, 1, 1, tzinfo=UTC)
COUNTRIES = ("US", "DE", "FR", "BR", "JP", "GB", "IN", "KR", "PL", "")


@dataclass(frozen=True)
class Endpoint:
    name: str
    path: str
    depth: str  # which viewers ask: top, middle or bottom of the board


TOP_10 = "/api/v1/leaderboard/top?limit=10"
AROUND_ME = "/api/v1/leaderboard/around-me"
ENDPOINTS = (
    Endpoint("top-10", TOP_10, "top"),
    # Same page; the caller's own rank is what grows with the board.
    Endpoint("top-10 + rank of a bottom viewer", TOP_10, "bottom"),
    Endpoint("around-me, top viewer", AROUND_ME, "top"),
    Endpoint("around-me, middle viewer", AROUND_ME, "middle"),
    Endpoint("around-me, bottom viewer", AROUND_ME, "bottom"),
)
# Endpoints whose cost must not grow with the board (at most 1.3x from 10k to 1M players).
SIZE_BOUND_ENDPOINTS = tuple(endpoint.name for endpoint in ENDPOINTS[1:])


@dataclass(frozen=True)
class Timing:
    duration: float
    warmup: float
    redis_benchmark_requests: int


# --- seeding --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Seeded:
    viewers: dict[str, list[uuid.UUID]]  # depth → user ids
    copy_seconds: float
    vacuum_seconds: float


def seed(database_url: str, size: int) -> Seeded:
    """Replace every player and total with `size` players, each with an all-time total.

    Scores are heavy-tailed (log-normal, in steps of 10 points as the catalog awards them), so
    the lower ranks hold long runs of equal scores, as real boards do. Same size, same board.
    """
    rng = random.Random(size)  # noqa: S311 - reproducible test data, not secrets
    created = SEED_EPOCH.isoformat()
    entries: list[tuple[int, int, uuid.UUID]] = []  # (-score, reached_at µs, user id)
    users: list[str] = []
    totals: list[str] = []
    started = time.monotonic()
    with psycopg.connect(database_url) as connection:
        connection.execute("TRUNCATE accounts_user, scoring_scoretotal CASCADE")
        with connection.cursor() as cursor:
            for number in range(size):
                # Ascending ids: the primary key and the unique indexes fill in order, which
                # makes COPY about twice as fast as random ids at 1M.
                user_id = uuid.UUID(int=number << 96 | rng.getrandbits(96))
                score = 10 * max(1, int(rng.lognormvariate(2.5, 1.3)))
                reached_micros = rng.randrange(365 * 86400 * 10**6)
                reached_at = SEED_EPOCH + timedelta(microseconds=reached_micros)
                name = f"p{number:07d}"
                users.append(
                    f"{user_id}\t!bench\t{name}\t{name}@bench.invalid\t{COUNTRIES[number % 10]}"
                    f"\thttps://cdn.bench.invalid/{name}.png\tuser\tt\tf\t1\t{created}\t{created}\n"
                )
                totals.append(
                    f"{DEFAULT_BOARD}\t{Period.ALL_TIME}\t{ALL_TIME_START}\t{user_id}\t{score}"
                    f"\t{reached_at.isoformat()}\t1\n"
                )
                entries.append((-score, reached_micros, user_id))
                if len(users) == COPY_CHUNK_ROWS or number == size - 1:
                    _copy(cursor, users, totals)
                    users, totals = [], []
    copy_seconds = time.monotonic() - started
    started = time.monotonic()
    with psycopg.connect(database_url, autocommit=True) as connection:
        connection.execute("VACUUM ANALYZE accounts_user, scoring_scoretotal")
    vacuum_seconds = time.monotonic() - started

    entries.sort()  # board order: score descending, earliest first, then lowest id
    order = [user_id for _, _, user_id in entries]
    middle = size // 2 - VIEWERS_PER_DEPTH // 2
    return Seeded(
        viewers={
            "top": order[:VIEWERS_PER_DEPTH],
            "middle": order[middle : middle + VIEWERS_PER_DEPTH],
            "bottom": order[-VIEWERS_PER_DEPTH:],
        },
        copy_seconds=copy_seconds,
        vacuum_seconds=vacuum_seconds,
    )


def _copy(cursor: psycopg.Cursor[Any], users: list[str], totals: list[str]) -> None:
    with cursor.copy(
        "COPY accounts_user (id, password, username, email, country, avatar, role, is_active,"
        " hide_from_leaderboards, signing_key_version, created_at, last_active_at) FROM STDIN"
    ) as copy:
        copy.write("".join(users))
    with cursor.copy(
        "COPY scoring_scoretotal (board, period, period_start, user_id, score, reached_at,"
        " version) FROM STDIN"
    ) as copy:
        copy.write("".join(totals))


# --- inside the node's settings -------------------------------------------------------------


def node_probe(request_path: str) -> None:
    """Run by `manage.py shell` with the Redis node's settings. Reads the viewers' ids from
    `request_path` and prints, as JSON: their access tokens (as the token endpoint mints them),
    the SQL the SQL backend sends for a top-10 page, the board's total and a bottom viewer's
    rank, and the EVALSHA arguments of the Redis backend's scripts for the same calls."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from accounts.models import User
    from accounts.services import _access_token_for
    from leaderboard.backends.redis import (
        _PAGE,
        _POSITION,
        _TOTAL,
        built_key,
        members_key,
        set_key,
    )
    from leaderboard.backends.redis import connection as redis_connection
    from leaderboard.backends.sql import SqlBoard
    from leaderboard.selectors import board_key

    viewers = json.loads(Path(request_path).read_text())
    users = User.objects.in_bulk(
        [uuid.UUID(user_id) for ids in viewers.values() for user_id in ids]
    )
    tokens = {
        depth: [str(_access_token_for(users[uuid.UUID(user_id)])) for user_id in ids]
        for depth, ids in viewers.items()
    }
    key = board_key(period=Period.ALL_TIME)
    bottom_viewer = uuid.UUID(viewers["bottom"][-1])
    board = SqlBoard()

    def captured(call: Callable[[], object]) -> list[str]:
        with CaptureQueriesContext(connection) as queries:
            call()
        return [query["sql"] for query in queries.captured_queries]

    client = redis_connection()
    set_name, built = set_key(key), built_key(key.board)
    print(
        json.dumps(
            {
                "tokens": tokens,
                "sql": {
                    "top-10 page": captured(lambda: board.top(key, offset=0, limit=10)),
                    "board total": captured(lambda: board.total(key)),
                    "rank of a bottom viewer": captured(lambda: board.position(key, bottom_viewer)),
                },
                "redis": {
                    "top-10 page": [client.script_load(_PAGE), 2, set_name, built, 0, 10],
                    "board total": [client.script_load(_TOTAL), 2, set_name, built],
                    "rank of a bottom viewer": [
                        client.script_load(_POSITION),
                        3,
                        set_name,
                        members_key(key),
                        built,
                        bottom_viewer.hex,
                    ],
                },
            }
        )
    )


# --- load -----------------------------------------------------------------------------------


def run_load(url: str, tokens: list[str], clients: int, duration: float) -> dict[str, Any]:
    """`clients` concurrent keep-alive clients GET `url` for `duration` seconds, taking turns
    with the viewers' tokens. Runs in the load-generator process."""
    cpu_before = time.process_time()
    started = time.monotonic()
    latencies, errors = asyncio.run(_load(url, tokens, clients, duration))
    elapsed = time.monotonic() - started
    return {
        "requests": len(latencies),
        "elapsed": elapsed,
        "latency": latency_summary_ms(latencies),
        "errors": dict(errors),
        "client_cpu_seconds": time.process_time() - cpu_before,
    }


async def _load(
    url: str, tokens: list[str], clients: int, duration: float
) -> tuple[list[float], Counter[str]]:
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    deadline = time.monotonic() + duration

    async def client(session: aiohttp.ClientSession, number: int) -> None:
        turn = number
        while time.monotonic() < deadline:
            headers = {"Authorization": f"Bearer {tokens[turn % len(tokens)]}"}
            turn += clients
            started = time.perf_counter()
            try:
                async with session.get(url, headers=headers) as response:
                    await response.read()
            except (aiohttp.ClientError, TimeoutError) as error:
                errors[type(error).__name__] += 1
                continue
            if response.status == 200:
                latencies.append(time.perf_counter() - started)
            else:
                errors[str(response.status)] += 1

    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=clients),
        timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_SECONDS),
    ) as session:
        await asyncio.gather(*(client(session, number) for number in range(clients)))
    return latencies, errors


@dataclass(frozen=True)
class Costs:
    """CPU seconds spent so far by the node, by the PostgreSQL server and by the Redis server
    (whole servers: parallel query workers come and go, and are counted too)."""

    server: float
    postgres: float
    redis: float

    @classmethod
    def now(cls, node: Node, postmaster: int, store: Redis) -> Costs:
        info = store.info("cpu")
        return cls(
            server=node.cpu_seconds(),
            postgres=_settled_tree_cpu_seconds(postmaster),
            redis=float(info["used_cpu_user"]) + float(info["used_cpu_sys"]),
        )


def postmaster_pid(admin: psycopg.Connection[Any]) -> int:
    """The local PostgreSQL server's main process: the parent of this connection's backend."""
    backend = admin.info.backend_pid
    return int(Path(f"/proc/{backend}/stat").read_text().rsplit(")", 1)[1].split()[1])


def _settled_tree_cpu_seconds(pid: int, attempts: int = 5) -> float:
    """A process tree's CPU time, read again when a child exits while it is being read (its
    time then moves into its parent's)."""
    for _ in range(attempts - 1):
        try:
            return tree_cpu_seconds(pid)
        except FileNotFoundError:
            continue
    return tree_cpu_seconds(pid)


def measure(
    node: Node,
    generator: Executor,
    endpoint: Endpoint,
    tokens: list[str],
    *,
    timing: Timing,
    postmaster: int,
    store: Redis,
) -> dict[str, Any]:
    url = node.url + endpoint.path
    generator.submit(run_load, url, tokens, CLIENTS, timing.warmup).result()
    before = Costs.now(node, postmaster, store)
    result = generator.submit(run_load, url, tokens, CLIENTS, timing.duration).result()
    after = Costs.now(node, postmaster, store)
    served = max(result["requests"], 1)
    errors = result["errors"]
    return {
        "endpoint": endpoint.name,
        "req/s": result["requests"] / result["elapsed"],
        "p50 ms": result["latency"]["p50_ms"],
        "p99 ms": result["latency"]["p99_ms"],
        "server CPU ms/req": (after.server - before.server) * 1000 / served,
        "PostgreSQL CPU ms/req": (after.postgres - before.postgres) * 1000 / served,
        "Redis CPU ms/req": (after.redis - before.redis) * 1000 / served,
        "client CPU %": 100 * result["client_cpu_seconds"] / result["elapsed"],
        "errors": ", ".join(f"{kind}: {count}" for kind, count in errors.items()) or 0,
    }


# --- store baselines ------------------------------------------------------------------------


def redis_baseline(arguments: list[Any], timing: Timing) -> dict[str, Any]:
    """redis-benchmark of one EVALSHA at the same concurrency as the service's clients."""
    output = subprocess.run(  # noqa: S603
        [  # noqa: S607
            "redis-benchmark",
            "-u",
            REDIS_URL,
            "-c",
            str(CLIENTS),
            "-n",
            str(timing.redis_benchmark_requests),
            "--csv",
            "EVALSHA",
            *map(str, arguments),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    header, row = list(csv.reader(output.strip().splitlines()))[-2:]
    figures = dict(zip(header, row, strict=True))
    return {
        "tool": f"redis-benchmark -c {CLIENTS}",
        "calls/s": float(figures["rps"]),
        "p50 ms": float(figures["p50_latency_ms"]),
        "p99 ms": float(figures["p99_latency_ms"]),
    }


def sql_baseline(
    database_url: str, statements: list[str], timing: Timing, work_dir: Path
) -> dict[str, Any]:
    """pgbench of the backend call's statements, one transaction each, same concurrency."""
    script = work_dir / "call.sql"
    script.write_text("".join(f"{statement};\n" for statement in statements))
    for old_log in work_dir.glob("pgbench_log*"):
        old_log.unlink()
    subprocess.run(  # noqa: S603
        [  # noqa: S607
            "pgbench",
            "-n",
            "-f",
            str(script),
            "-c",
            str(CLIENTS),
            "-j",
            str(os.cpu_count() or 1),  # pgbench threads: one per core
            "-T",
            str(max(1, round(timing.duration))),
            "-l",
            "--log-prefix",
            str(work_dir / "pgbench_log"),
            database_url,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    # Per transaction: client, transaction number, latency in µs, script, epoch, µs.
    latencies = [
        int(line.split()[2]) / 1e6
        for log in work_dir.glob("pgbench_log*")
        for line in log.read_text().splitlines()
    ]
    summary = latency_summary_ms(latencies)
    return {
        "tool": f"pgbench -c {CLIENTS}",
        "calls/s": len(latencies) / max(1, round(timing.duration)),
        "p50 ms": summary["p50_ms"],
        "p99 ms": summary["p99_ms"],
    }


# --- the run --------------------------------------------------------------------------------


def node_env(database_url: str, backend: str) -> dict[str, str]:
    """The backend is chosen by REDIS_URL alone: without it the board, the rate limits and the
    cache are the SQL board and per-process memory (docs/configuration.md)."""
    return {
        "DATABASE_URL": database_url,
        "DATABASE_REPLICA_URL": "",
        "REDIS_URL": REDIS_URL if backend == "redis" else "",
        "REDIS_KEY_PREFIX": "bench-boards",
        "SCOREBOARD_RATE_API_PER_IP": UNLIMITED_RATE,
        "SCOREBOARD_RATE_API_PER_INSTANCE": UNLIMITED_RATE,
    }


def size_label(size: int) -> str:
    if size >= 1_000_000 and size % 1_000_000 == 0:
        return f"{size // 1_000_000}M"
    if size >= 1000 and size % 1000 == 0:
        return f"{size // 1000}k"
    return str(size)


@contextmanager
def load_generator() -> Iterator[Executor]:
    """One separate process (spawned, so it shares nothing with this one) for the clients."""
    with ProcessPoolExecutor(
        max_workers=1, mp_context=multiprocessing.get_context("spawn")
    ) as pool:
        yield pool


def run(
    sizes: Sequence[int], timing: Timing, report: Report, *, server: str, profile: bool
) -> None:
    store = Redis.from_url(REDIS_URL)
    with psycopg.connect(DATABASE_URL, autocommit=True) as admin:
        postmaster = postmaster_pid(admin)
    results: list[dict[str, Any]] = []
    profiles: list[Profile] = []
    baselines: list[dict[str, Any]] = []
    seeding: list[dict[str, Any]] = []
    with (
        tempfile.TemporaryDirectory(prefix="bench-boards-") as work,
        fresh_database(DATABASE_NAME) as database_url,
        load_generator() as generator,
    ):
        work_dir = Path(work)
        for size in sizes:
            label = size_label(size)
            print(f"\n{label} players: seeding", flush=True)
            seeded = seed(database_url, size)
            store.flushdb()
            started = time.monotonic()
            rebuilt = manage(node_env(database_url, "redis"), "rebuild_leaderboards").strip()
            rebuild_seconds = time.monotonic() - started
            seeding.append(
                {
                    "players": label,
                    "COPY s": seeded.copy_seconds,
                    "VACUUM ANALYZE s": seeded.vacuum_seconds,
                    "rebuild_leaderboards s": rebuild_seconds,
                    "rebuild": rebuilt,
                }
            )
            request = work_dir / "viewers.json"
            request.write_text(
                json.dumps({depth: [str(u) for u in ids] for depth, ids in seeded.viewers.items()})
            )
            probe = json.loads(
                manage(
                    node_env(database_url, "redis"),
                    "shell",
                    "-c",
                    f"from bench.board_reads import node_probe; node_probe({str(request)!r})",
                ).splitlines()[-1]
            )
            for backend in ("redis", "sql"):
                with served_node(
                    node_env(database_url, backend),
                    log_dir=work_dir,
                    server=server,
                    workers=WORKERS[server],
                ) as node:
                    measure_on_node = functools.partial(
                        measure, node, generator, timing=timing, postmaster=postmaster, store=store
                    )
                    for endpoint in ENDPOINTS:
                        row = measure_on_node(endpoint, probe["tokens"][endpoint.depth])
                        results.append({"backend": backend, "players": label, **row})
                        print(
                            f"  {backend} {endpoint.name}: {row['req/s']:,.0f} req/s, "
                            f"p50 {row['p50 ms']} ms, p99 {row['p99 ms']} ms",
                            flush=True,
                        )
                    if profile and backend == "redis" and size == max(sizes):
                        # A pass of its own: the sampler's CPU is in none of the figures.
                        top_10 = ENDPOINTS[0]
                        with profiled(node, report.artifact("profile.txt")) as profiles:
                            measure_on_node(top_10, probe["tokens"][top_10.depth])
                for call, arguments in probe[backend].items():
                    figures = (
                        redis_baseline(arguments, timing)
                        if backend == "redis"
                        else sql_baseline(database_url, arguments, timing, work_dir)
                    )
                    baselines.append(
                        {"backend": backend, "players": label, "store call": call, **figures}
                    )
        store.flushdb()

    report.table(
        f"Service: {CLIENTS} clients, {server}, {WORKERS[server]} processes (CPU per request: "
        "the node, the PostgreSQL server, the Redis server)",
        [
            "backend",
            "players",
            "endpoint",
            "req/s",
            "p50 ms",
            "p99 ms",
            "server CPU ms/req",
            "PostgreSQL CPU ms/req",
            "Redis CPU ms/req",
            "client CPU %",
            "errors",
        ],
        results,
    )
    report.table(
        "Same-run baseline: the backend's own store calls, without the service",
        ["backend", "players", "store call", "tool", "calls/s", "p50 ms", "p99 ms"],
        baselines,
    )
    report.table(
        "Seeding (not part of the figures)",
        ["players", "COPY s", "VACUUM ANALYZE s", "rebuild_leaderboards s", "rebuild"],
        seeding,
    )
    if len(sizes) > 1:
        report.table(
            f"Cost at {size_label(max(sizes))} players ÷ cost at {size_label(min(sizes))} "
            f"(goal: at most {SIZE_RATIO_GOAL})",
            ["backend", "endpoint", "p50 ratio", "CPU ms/req ratio", "req/s ratio", "goal met"],
            size_ratios(results, size_label(min(sizes)), size_label(max(sizes))),
        )
    for found in profiles:
        report.profile(
            f"Where the node's CPU goes: top-10, Redis backend, {size_label(max(sizes))} players",
            found,
        )
    for row in results:
        if row["backend"] == "redis" and row["endpoint"] == "top-10":
            verdict = "met" if row["req/s"] >= TOP_10_GOAL_REQUESTS_PER_SECOND else "not met"
            report.note(
                f"Goal top-10 ≥ {TOP_10_GOAL_REQUESTS_PER_SECOND:,} req/s on the Redis backend "
                f"at {CLIENTS} clients, {row['players']} players: {row['req/s']:,.0f} req/s, "
                f"{verdict}."
            )


def _total_cpu_ms(row: dict[str, Any]) -> float:
    return float(row["server CPU ms/req"] + row["PostgreSQL CPU ms/req"] + row["Redis CPU ms/req"])


def size_ratios(results: list[dict[str, Any]], small: str, big: str) -> list[dict[str, Any]]:
    """Per backend and size-bound endpoint: the big board's p50, CPU per request (node plus
    stores) and throughput relative to the small board's."""
    by_key = {(row["backend"], row["endpoint"], row["players"]): row for row in results}
    ratios = []
    for backend in ("redis", "sql"):
        for endpoint in SIZE_BOUND_ENDPOINTS:
            before, after = by_key[(backend, endpoint, small)], by_key[(backend, endpoint, big)]
            p50 = after["p50 ms"] / max(before["p50 ms"], 1e-9)
            cpu = _total_cpu_ms(after) / max(_total_cpu_ms(before), 1e-9)
            ratios.append(
                {
                    "backend": backend,
                    "endpoint": endpoint,
                    "p50 ratio": p50,
                    "CPU ms/req ratio": cpu,
                    "req/s ratio": before["req/s"] / max(after["req/s"], 1e-9),
                    "goal met": "yes" if max(p50, cpu) <= SIZE_RATIO_GOAL else "no",
                }
            )
    return ratios


def _sizes(text: str) -> list[int]:
    sizes = [int(part) for part in text.split(",")]
    if any(size < len(DEPTHS) * VIEWERS_PER_DEPTH for size in sizes):
        raise argparse.ArgumentTypeError(
            f"every size must be at least {len(DEPTHS) * VIEWERS_PER_DEPTH} players"
        )
    return sorted(set(sizes))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short runs (3 s per endpoint)")
    parser.add_argument(
        "--sizes",
        type=_sizes,
        default=list(DEFAULT_SIZES),
        help="comma-separated board sizes in players (10000,100000,1000000)",
    )
    parser.add_argument("--duration", type=float, help="seconds per endpoint (10, quick 3)")
    parser.add_argument("--server", choices=SERVERS, default="gunicorn")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="sample the node with py-spy during one more top-10 pass at the largest size",
    )
    args = parser.parse_args()
    duration = args.duration or (3.0 if args.quick else 10.0)
    timing = Timing(
        duration=duration,
        warmup=1.0 if args.quick else 2.0,
        redis_benchmark_requests=20_000 if args.quick else 100_000,
    )
    report = Report(
        "board-reads",
        "Board reads: top-10, rank and around-me by board size, Redis and SQL backends",
    )
    run(args.sizes, timing, report, server=args.server, profile=args.profile)
    report.note(
        "Machine shared and noisy: compare ratios and CPU per request more than absolute req/s. "
        "The load generator and both stores share the node's 2 cores. PostgreSQL and Redis CPU "
        "are the whole servers' (anything else using them counts too). The SQL backend runs "
        "without REDIS_URL, so its rate limits are in-process, not Redis round trips."
    )
    print(f"\nwritten: {report.write()}")


if __name__ == "__main__":
    main()
