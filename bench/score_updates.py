"""Score updates end to end (`POST /api/v1/scores/update`) beside pgbench running the same SQL.

    python -m bench.score_updates [--quick] [--duration SECONDS] [--concurrency 8,32,128]
                                  [--server uvicorn|gunicorn] [--workers N]

One run, in a database of its own (`bench_scores`, dropped afterwards) and Redis keys under a
prefix of its own (deleted afterwards):

1. Preparation, not timed (`prepare`, a Django process with the node's settings): the action
   catalog, a game server, USERS players with their access JWT (the token the API issues) and
   signing key. One action token is issued through the real `action_complete` (game-server
   proof and all); every other token is a copy of that row with its own id, actionId, user and
   token hash (SHA-256 of a random token, as `action_complete` stores it), made by one
   INSERT … SELECT: the service's tokens (raw token kept for the client in
   `bench_service_input`) and pgbench's (`bench_pgbench_input`), spread round-robin over the
   players, enough for TOKEN_RATE_CAPS per second of each level.
2. Capture (`capture`, same settings): one real score update (a player's second, as almost
   every update in the run is a returning player's) through `django.test.Client`, so through
   every middleware, the JWT authentication, the rate limits, the view and
   `score_update_submit`/`score_update_apply`, with a `connection.execute_wrapper` recording
   every statement with its parameters and whether it ran inside the transaction. It becomes
   the pgbench script, statement for statement, in order:
   - a first statement that pgbench needs and the service does not: it reads this
     transaction's identities from `bench_pgbench_input` (one primary-key lookup, the row
     number from a sequence, so every transaction consumes a different prepared token) and
     `\\gset`s them as variables `user_id`, `token_hash`, `token_id`, `action_id`,
     `score_update_id`;
   - each captured parameter equal to the captured update's user id, token hash, token id,
     actionId or new score update id becomes that variable (`:user_id` …); every other
     parameter (board, periods, period starts, points, scores, ranks, timestamps, ip, user
     agent, status, risk reasons) stays the literal the service sent;
   - statements that ran inside `transaction.atomic()` are wrapped in BEGIN … COMMIT, as the
     service's one transaction (savepoints, if any, are captured like any statement).
   pgbench then runs it with `-M prepared` (the service sends the same statements with
   client-side-bound literals through the simple protocol, so prepared pgbench is the stricter
   baseline).
3. Measurement: one app node (uvicorn, 1 process, unless `--server`); per concurrency level,
   the load generator (a separate process: aiohttp, one request in flight per client, each
   body signed right before it is sent) for `duration` seconds, then pgbench with as many
   clients (fewer if PostgreSQL's max_connections has no room) for as long.

Rate limits and anomaly rules are relaxed through their existing settings in the node's
environment only (BENCH_NODE_SETTINGS); their checks still run on every request.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

from bench import harness

DATABASE_NAME = "bench_scores"
UPDATE_PATH = "/api/v1/scores/update"
ACTION_TYPE = "ACHIEVEMENT_UNLOCK"  # no minimum duration, no daily cap in the default catalog
USERS = 2_000
COUNTRIES = ("US", "DE", "FR", "BR", "JP", "KR", "GB", "IN")
# Tokens prepared per second of each level: above what this machine can reach, so no level
# runs out (a level that does is reported).
TOKEN_RATE_CAPS = {"service": 1_500, "pgbench": 5_000}
WARM_UP_SECONDS = 2
GOAL_CLIENTS, GOAL_RATIO, GOAL_P99_MS = 32, 0.5, 100
# Connections left to the app node's pool and anything else when sizing pgbench.
CONNECTION_HEADROOM = 15
SERVICE_INPUT_TABLE = "bench_service_input"
PGBENCH_INPUT_TABLE = "bench_pgbench_input"
PGBENCH_SEQUENCE = "bench_pgbench_input_n"
PGBENCH_VARIABLES = ("user_id", "token_hash", "token_id", "action_id", "score_update_id")
# Relaxed for the benchmark, in the node's environment only; the checks themselves still run.
BENCH_NODE_SETTINGS = {
    "SCOREBOARD_RATE_SCORE_UPDATES": "1000000/min",
    "SCOREBOARD_RATE_API_PER_IP": "1000000/min",
    "SCOREBOARD_RATE_API_PER_INSTANCE": "1000000/min",
    "SCOREBOARD_ANOMALY_POINTS_LIMIT": "1000000000",
    "SCOREBOARD_ANOMALY_REPEAT_LIMIT": "1000000000",
    "SCOREBOARD_ACTION_TOKEN_SECONDS": "3600",  # prepared tokens outlive the run
    "SCOREBOARD_INSTANCE_ID": "bench-scores",
}


# --- the orchestrating process ---------------------------------------------------------------


@dataclass(frozen=True)
class ServiceFigures:
    clients: int
    requests_per_second: float
    counted: int
    held: int
    errors: int
    error_samples: dict[str, int]
    latency: dict[str, float]
    server_cpu_ms_per_request: float
    client_cpu_seconds: float
    tokens_ran_out: bool


@dataclass(frozen=True)
class PgbenchFigures:
    clients: int
    tps: float
    latency_average_ms: float
    latency: dict[str, float]
    failed: int
    problem: str


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="5 s per level")
    parser.add_argument("--duration", type=int, default=20, help="seconds per level (20)")
    parser.add_argument("--concurrency", default="8,32,128", help="levels (8,32,128)")
    parser.add_argument("--server", choices=harness.SERVERS, default="gunicorn")
    parser.add_argument("--workers", type=int, help="server processes (uvicorn 1, gunicorn 4)")
    parser.add_argument(
        "--profile", type=int, metavar="CLIENTS", help="sample the server with py-spy at this level"
    )
    args = parser.parse_args()
    duration = 5 if args.quick else args.duration
    levels = [int(level) for level in args.concurrency.split(",")]
    workers = args.workers or (1 if args.server == "uvicorn" else 4)
    if duration < 1 or not levels or min(levels) < 1 or workers < 1:
        parser.error("duration, concurrency levels and workers must be positive")
    if args.profile is not None and args.profile not in levels:
        parser.error("--profile names one of the concurrency levels")

    report = harness.Report("score-updates", "Score updates: end to end vs pgbench of the same SQL")
    redis_prefix = f"bench-scores-{os.getpid()}"
    try:
        with (
            tempfile.TemporaryDirectory(prefix="bench-scores-") as scratch,
            harness.fresh_database(DATABASE_NAME) as url,
        ):
            results, script, profiles = _measure(
                url=url,
                env=_node_env(url, redis_prefix),
                levels=levels,
                duration=duration,
                layout=(args.server, workers),
                scratch=Path(scratch),
                profile_at=args.profile,
                profile_path=report.artifact("profile.txt"),
            )
    finally:
        _redis_forget(redis_prefix)
    for profile in profiles:
        report.profile(f"Where the server's CPU goes at {args.profile} clients", profile)
    _publish(report, results, script, duration=duration, layout=(args.server, workers))


def _node_env(url: str, redis_prefix: str) -> dict[str, str]:
    return {
        **BENCH_NODE_SETTINGS,
        "DATABASE_URL": url,
        "REDIS_URL": harness.REDIS_URL,
        "REDIS_KEY_PREFIX": redis_prefix,
    }


def _measure(
    *,
    url: str,
    env: dict[str, str],
    levels: Sequence[int],
    duration: int,
    layout: tuple[str, int],
    scratch: Path,
    profile_at: int | None,
    profile_path: Path,
) -> tuple[list[tuple[ServiceFigures, PgbenchFigures]], str, list[harness.Profile]]:
    timed_seconds = duration * (len(levels) + (profile_at is not None))
    _run_role(
        env,
        "prepare",
        str(TOKEN_RATE_CAPS["service"] * (timed_seconds + WARM_UP_SECONDS) + 2),
        str(TOKEN_RATE_CAPS["pgbench"] * timed_seconds),
    )
    # As in production (the reconcile loop, or a rebuild after deploy): the board index is
    # built, so ranks come from it.
    harness.manage(env, "rebuild_leaderboards")
    script = json.loads(_run_role(env, "capture"))["script"]
    script_path = scratch / "score_update.sql"
    script_path.write_text(script)

    server, workers = layout
    results = []
    profiles: list[harness.Profile] = []
    with harness.served_node(env, log_dir=scratch, server=server, workers=workers) as node:
        _drive_service(node, url, clients=min(levels), duration=WARM_UP_SECONDS)
        for clients in levels:
            service = _drive_service(node, url, clients=clients, duration=duration)
            pgbench = _run_pgbench(
                url, script_path, clients=clients, duration=duration, log_dir=scratch
            )
            results.append((service, pgbench))
        if profile_at is not None:
            # A pass of its own, so that the sampler's CPU is in none of the figures above.
            with harness.profiled(node, profile_path) as profiles:
                _drive_service(node, url, clients=profile_at, duration=duration)
    return results, script, profiles


def _run_role(env: dict[str, str], role: str, *args: str) -> str:
    """Run one of this module's roles with the node's settings; returns what it printed."""
    return harness.run_python(env, "-m", "bench.score_updates", "--role", role, *args)


def _drive_service(node: harness.Node, url: str, *, clients: int, duration: int) -> ServiceFigures:
    cpu_before = node.cpu_seconds()
    generator = subprocess.run(  # noqa: S603
        [
            harness.PYTHON,
            "-m",
            "bench.score_updates",
            "--role",
            "load",
            node.url,
            url,
            str(clients),
            str(duration),
            str(TOKEN_RATE_CAPS["service"] * duration),
        ],
        cwd=harness.ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=duration + 120,
    )
    server_cpu = node.cpu_seconds() - cpu_before
    if generator.returncode != 0:
        raise RuntimeError(f"the load generator failed:\n{generator.stderr}")
    load = json.loads(generator.stdout)
    answered = max(1, load["answered"])
    return ServiceFigures(
        clients=clients,
        requests_per_second=load["counted"] / load["elapsed"],
        counted=load["counted"],
        held=load["held"],
        errors=sum(load["errors"].values()),
        error_samples=load["errors"],
        latency=load["latency"],
        server_cpu_ms_per_request=server_cpu * 1000 / answered,
        client_cpu_seconds=load["cpu_seconds"],
        tokens_ran_out=load["tokens_ran_out"],
    )


def _connection_room(url: str) -> int:
    """Connections PostgreSQL can still take, less a margin for the app node's pool."""
    with psycopg.connect(url, autocommit=True) as connection:
        row = connection.execute(
            "SELECT current_setting('max_connections')::int"
            " - current_setting('superuser_reserved_connections')::int"
            " - (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')"
        ).fetchone()
    return max(1, (row[0] if row else 0) - CONNECTION_HEADROOM)


def _run_pgbench(
    url: str, script_path: Path, *, clients: int, duration: int, log_dir: Path
) -> PgbenchFigures:
    connections = min(clients, _connection_room(url))
    log_prefix = log_dir / f"pgbench-{clients}"
    result = subprocess.run(  # noqa: S603
        [  # noqa: S607
            "pgbench",
            "--no-vacuum",
            "--client",
            str(connections),
            "--jobs",
            str(min(2, connections)),
            "--time",
            str(duration),
            "--protocol",
            "prepared",
            "--file",
            str(script_path),
            "--log",
            "--log-prefix",
            str(log_prefix),
            url,
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=duration + 120,
    )
    output = result.stdout + result.stderr
    latencies = [
        int(fields[2]) / 1_000_000
        for log in log_dir.glob(f"{log_prefix.name}.*")
        for fields in (line.split() for line in log.read_text().splitlines())
        if len(fields) > 2 and fields[2].isdigit()
    ]
    problem = "" if result.returncode == 0 else _pgbench_problem(output)
    return PgbenchFigures(
        clients=connections,
        tps=_pgbench_figure(r"tps = ([\d.]+) \(without initial", output),
        latency_average_ms=_pgbench_figure(r"latency average = ([\d.]+) ms", output),
        latency=harness.latency_summary_ms(latencies),
        failed=int(_pgbench_figure(r"number of failed transactions: (\d+)", output)),
        problem=problem,
    )


def _pgbench_figure(pattern: str, output: str) -> float:
    match = re.search(pattern, output)
    return float(match[1]) if match else 0.0


def _pgbench_problem(output: str) -> str:
    errors = [line for line in output.splitlines() if "error" in line or "aborted" in line]
    return "; ".join(errors[:3]) or output.strip().splitlines()[-1]


def _redis_forget(prefix: str) -> None:
    """Delete the run's keys (rate-limit counters, board index, channel-layer leftovers)."""
    import redis

    client = redis.Redis.from_url(harness.REDIS_URL)
    batch: list[bytes] = []
    for key in client.scan_iter(match=f"{prefix}*", count=1000):
        batch.append(key)
        if len(batch) == 1000:
            client.delete(*batch)
            batch.clear()
    if batch:
        client.delete(*batch)


def _publish(
    report: harness.Report,
    results: list[tuple[ServiceFigures, PgbenchFigures]],
    script: str,
    *,
    duration: int,
    layout: tuple[str, int],
) -> None:
    server, workers = layout
    columns = [
        "clients",
        "service req/s",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "max ms",
        "errors",
        "held",
        "server CPU ms/req",
        "client CPU s",
        "pgbench clients",
        "pgbench tps",
        "pgbench avg ms",
        "pgbench p99 ms",
        "pgbench failed",
        "service/pgbench",
    ]
    rows = [
        {
            "clients": service.clients,
            "service req/s": round(service.requests_per_second, 1),
            "p50 ms": service.latency["p50_ms"],
            "p95 ms": service.latency["p95_ms"],
            "p99 ms": service.latency["p99_ms"],
            "max ms": service.latency["max_ms"],
            "errors": service.errors,
            "held": service.held,
            "server CPU ms/req": round(service.server_cpu_ms_per_request, 2),
            "client CPU s": round(service.client_cpu_seconds, 1),
            "pgbench clients": pgbench.clients,
            "pgbench tps": round(pgbench.tps, 1),
            "pgbench avg ms": pgbench.latency_average_ms,
            "pgbench p99 ms": pgbench.latency["p99_ms"],
            "pgbench failed": pgbench.failed,
            "service/pgbench": round(service.requests_per_second / pgbench.tps, 3)
            if pgbench.tps
            else None,
        }
        for service, pgbench in results
    ]
    report.table(
        f"POST /api/v1/scores/update, {server} x {workers}, {duration} s per level",
        columns,
        rows,
    )
    statements = [line for line in script.splitlines() if line.strip()]
    report.table(
        "pgbench script: the SQL of one captured score update",
        ["#", "statement"],
        [{"#": number, "statement": f"`{line}`"} for number, line in enumerate(statements, 1)],
    )
    report.note(
        f"Server: {server} with {workers} process(es) on loopback; the load generator is one "
        "aiohttp process on the same cores (its CPU is 'client CPU s'). Server CPU counts the "
        "app processes only, not PostgreSQL or Redis."
    )
    report.note(
        f"Requests per second count 200s only; 'held' are 202 PENDING_REVIEW; errors are any "
        f"other answer or a failed connection. {USERS} players, {ACTION_TYPE} tokens prepared in "
        "advance; rate limits and the points/repeat anomaly rules relaxed by environment "
        "(their checks still run)."
    )
    report.note(
        "pgbench runs statement 1 (reading the transaction's prepared identities) in addition "
        "to the service's SQL, with -M prepared; the service also writes the Redis board "
        "index and announces the update after commit, which pgbench does not."
    )
    for service, pgbench in results:
        if service.clients == GOAL_CLIENTS:
            ratio = service.requests_per_second / pgbench.tps if pgbench.tps else 0.0
            met = (
                ratio >= GOAL_RATIO
                and service.latency["p99_ms"] <= GOAL_P99_MS
                and service.errors == 0
            )
            report.note(
                f"Goal at {GOAL_CLIENTS} clients: service/pgbench ≥ {GOAL_RATIO}, p99 "
                f"≤ {GOAL_P99_MS} ms, no errors. Measured {ratio:.2f}, p99 "
                f"{service.latency['p99_ms']:,.0f} ms, {service.errors} errors: "
                f"{'met' if met else 'not met'}."
            )
        if service.error_samples:
            report.note(f"{service.clients} clients, errors: {service.error_samples}")
        if service.tokens_ran_out:
            report.note(f"{service.clients} clients: prepared tokens ran out before the end.")
        if pgbench.clients < service.clients:
            report.note(
                f"{service.clients} clients: pgbench ran with {pgbench.clients} clients, all "
                "that PostgreSQL's max_connections leaves room for."
            )
        if pgbench.problem:
            report.note(f"{service.clients} clients: pgbench: {pgbench.problem}")
    json_path = report.write()
    plot_path = _plot(results, json_path.with_suffix(".png"), layout=layout)
    print(f"\nwrote {json_path}, {json_path.with_suffix('.md')} and {plot_path}")


def _plot(
    results: list[tuple[ServiceFigures, PgbenchFigures]], path: Path, *, layout: tuple[str, int]
) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    clients = [service.clients for service, _ in results]
    figure, axes = pyplot.subplots(figsize=(7, 4.5))
    axes.plot(
        clients,
        [service.requests_per_second for service, _ in results],
        marker="o",
        label=f"service ({layout[0]} x {layout[1]}), req/s",
    )
    axes.plot(
        clients, [pgbench.tps for _, pgbench in results], marker="s", label="pgbench, same SQL, tps"
    )
    axes.set_xscale("log", base=2)
    axes.set_xticks(clients, [str(count) for count in clients])
    axes.set_xlabel("concurrent clients")
    axes.set_ylabel("score updates per second")
    axes.set_ylim(bottom=0)
    axes.set_title("Score updates: end to end vs pgbench")
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    pyplot.close(figure)
    return path


# --- what the roles share ---------------------------------------------------------------------

USER_AGENT = "bench-score-updates"  # the same in the capture and the load: it is stored
NEXT_TOKENS = f"SELECT n FROM {SERVICE_INPUT_TABLE} ORDER BY n LIMIT %s"  # noqa: S608
FIRST_PLAYERS_TOKENS = (
    f"SELECT n FROM {SERVICE_INPUT_TABLE} WHERE user_id ="  # noqa: S608
    f" (SELECT user_id FROM {SERVICE_INPUT_TABLE} ORDER BY n LIMIT 1) ORDER BY n LIMIT %s"
)
# {chosen}: one of the two above, the `n` of the tokens to take.
CLAIM_TOKENS_SQL = (
    f"WITH claimed AS (DELETE FROM {SERVICE_INPUT_TABLE} WHERE n IN ({{chosen}})"  # noqa: S608
    " RETURNING n, token, user_id, token_id, action_id, points)"
    " SELECT claimed.token, claimed.user_id, claimed.token_id, claimed.action_id,"
    " claimed.points, bench_user.access_token, bench_user.signing_key"
    " FROM claimed JOIN bench_user USING (user_id) ORDER BY claimed.n"
)


@dataclass(frozen=True)
class PreparedToken:
    """An unused action token and what its player's client holds."""

    token: str
    user_id: str
    token_id: str
    action_id: str
    points: int
    access_token: str
    signing_key: str


def claim_tokens(cursor: Any, count: int, *, one_player: bool = False) -> list[PreparedToken]:
    """Take `count` prepared tokens out of the table, so no two requests share one: the next
    ones in round-robin order over the players, or (`one_player`) the first player's."""
    chosen = FIRST_PLAYERS_TOKENS if one_player else NEXT_TOKENS
    cursor.execute(CLAIM_TOKENS_SQL.format(chosen=chosen), [count])
    return [
        PreparedToken(
            token=token,
            user_id=str(user_id),
            token_id=str(token_id),
            action_id=str(action_id),
            points=points,
            access_token=access_token,
            signing_key=signing_key,
        )
        for token, user_id, token_id, action_id, points, access_token, signing_key in (
            cursor.fetchall()
        )
    ]


def hmac_hex(key: str, message: str) -> str:
    return hmac.new(key.encode(), message.encode(), hashlib.sha256).hexdigest()


def signed_request(prepared: PreparedToken) -> tuple[dict[str, str], bytes]:
    """Headers and body of a score update, signed now (the timestamp must be fresh)."""
    timestamp = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    body = {
        "userId": prepared.user_id,
        "actionType": ACTION_TYPE,
        "actionId": prepared.action_id,
        "scoreIncrement": prepared.points,
        "timestamp": timestamp,
        "clientSignature": hmac_hex(
            prepared.signing_key,
            f"{prepared.user_id}{prepared.action_id}{timestamp}{prepared.points}",
        ),
    }
    headers = {
        "Authorization": f"Bearer {prepared.access_token}",
        "X-Action-Token": prepared.token,
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
    }
    return headers, json.dumps(body, separators=(",", ":")).encode()


# --- role `prepare`: players, tokens and the tables the clients read (Django) -----------------


def prepare(service_tokens: int, pgbench_tokens: int) -> None:
    import django

    django.setup()
    from django.contrib.auth.hashers import make_password
    from django.db import connection

    from accounts.models import User
    from accounts.selectors import user_signing_key
    from accounts.services import _access_token_for
    from scoring.services import actions_load_defaults

    actions_load_defaults()
    users = User.objects.bulk_create(
        [
            User(
                username=f"bench-{number:05d}",
                email=f"bench-{number:05d}@example.com",
                country=COUNTRIES[number % len(COUNTRIES)],
                password=make_password(None),
            )
            for number in range(USERS)
        ],
        batch_size=1000,
    )
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE UNLOGGED TABLE bench_user (user_id uuid PRIMARY KEY, position int UNIQUE,"
            " access_token text NOT NULL, signing_key text NOT NULL)"
        )
        cursor.executemany(
            "INSERT INTO bench_user VALUES (%s, %s, %s, %s)",
            [
                # The access token the API issues (its public path checks a password first).
                (user.pk, position, str(_access_token_for(user)), user_signing_key(user))
                for position, user in enumerate(users)
            ],
        )
    template_id = _issue_template_token(users[0])
    for batch_table, count in (
        (SERVICE_INPUT_TABLE, service_tokens),
        (PGBENCH_INPUT_TABLE, pgbench_tokens),
    ):
        _copy_template_token(template_id, batch_table=batch_table, count=count)
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE SEQUENCE {PGBENCH_SEQUENCE}")
        cursor.execute("ANALYZE")


def _issue_template_token(user: Any) -> uuid.UUID:
    """One action token issued the real way, from a game server's signed proof."""
    from scoring.models import ActionToken
    from scoring.services import game_server_create

    server, secret = game_server_create(name="bench-scores")
    action_id, _, _ = harness.complete_action(
        user, key_id=server.key_id, secret=secret, action_type=ACTION_TYPE
    )
    return ActionToken.objects.get(action_id=action_id).pk


def _copy_template_token(template_id: uuid.UUID, *, batch_table: str, count: int) -> None:
    """`count` copies of the template token, each with its own id, actionId, player (round
    robin) and token (SHA-256 stored, raw kept in `batch_table` with the ids)."""
    from django.db import connection

    from scoring.models import ActionToken

    quote = connection.ops.quote_name
    own_per_copy = {
        "id": "batch.token_id",
        "user_id": "batch.user_id",
        "action_id": "batch.action_id",
        "token_hash": "batch.token_hash",
    }
    columns = [field.column for field in ActionToken._meta.concrete_fields]
    values = [own_per_copy.get(column, f"template.{quote(column)}") for column in columns]
    tokens_table = quote(ActionToken._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"CREATE UNLOGGED TABLE {batch_table} (n bigint PRIMARY KEY, token text NOT NULL,"
            " token_hash text NOT NULL, user_id uuid NOT NULL, token_id uuid NOT NULL,"
            " action_id uuid NOT NULL, score_update_id uuid NOT NULL, points int NOT NULL)"
        )
        cursor.execute(
            f"INSERT INTO {batch_table} SELECT drawn.n, drawn.token,"  # noqa: S608
            " encode(sha256(convert_to(drawn.token, 'UTF8')), 'hex'), bench_user.user_id,"
            " gen_random_uuid(), gen_random_uuid(), gen_random_uuid(), template.points"
            " FROM (SELECT n, md5(random()::text || n) || md5(random()::text || n) AS token"
            "       FROM generate_series(1, %s) AS n) AS drawn"
            f" JOIN bench_user ON bench_user.position = drawn.n %% %s"
            f" CROSS JOIN {tokens_table} AS template WHERE template.id = %s",
            [count, USERS, template_id],
        )
        cursor.execute(
            f"INSERT INTO {tokens_table} ({', '.join(quote(column) for column in columns)})"  # noqa: S608
            f" SELECT {', '.join(values)} FROM {batch_table} AS batch"
            f" CROSS JOIN {tokens_table} AS template WHERE template.id = %s",
            [template_id],
        )


# --- role `capture`: the SQL of one real score update, as a pgbench script (Django) -----------


def capture() -> None:
    import django

    django.setup()
    from django.db import connection
    from django.test import Client
    from psycopg import sql

    from scoring.models import ScoreUpdate
    from scoring.services import hash_action_token

    # A player's second update: the first has no previous score (so no previous rank to
    # count), while in the run almost every update is a returning player's.
    with connection.cursor() as cursor:
        first, prepared = claim_tokens(cursor, 2, one_player=True)
    client = Client(HTTP_HOST="127.0.0.1")
    statements: list[tuple[str, Any, bool]] = []

    def record(execute: Any, statement: str, params: Any, many: bool, context: Any) -> Any:
        if many:
            raise RuntimeError(f"executemany is not captured: {statement}")
        statements.append((statement, params, connection.in_atomic_block))
        return execute(statement, params, many, context)

    def submit(token: PreparedToken) -> None:
        headers, body = signed_request(token)
        response = client.post(UPDATE_PATH, body, content_type="application/json", headers=headers)
        if response.status_code != 200:
            raise RuntimeError(
                f"a capture update failed: {response.status_code} {response.content!r}"
            )

    submit(first)
    with connection.execute_wrapper(record):
        submit(prepared)

    score_update = ScoreUpdate.objects.get(action_token_id=uuid.UUID(prepared.token_id))
    variables = {
        prepared.user_id: "user_id",
        hash_action_token(prepared.token): "token_hash",
        prepared.token_id: "token_id",
        prepared.action_id: "action_id",
        str(score_update.pk): "score_update_id",
    }
    connection.ensure_connection()
    raw_connection = connection.connection

    def literal(value: Any) -> str:
        return sql.Literal(value).as_string(raw_connection)

    lines = [
        f"SELECT {', '.join(PGBENCH_VARIABLES)} FROM {PGBENCH_INPUT_TABLE}"  # noqa: S608
        f" WHERE n = (SELECT nextval('{PGBENCH_SEQUENCE}')) \\gset"
    ]
    used: set[str] = set()
    in_transaction = False
    for statement, params, atomic in statements:
        if atomic != in_transaction:
            lines.append("BEGIN;" if atomic else "COMMIT;")
            in_transaction = atomic
        lines.append(pgbench_statement(statement, params, variables, literal, used))
    if in_transaction:
        lines.append("COMMIT;")
    if missing := set(PGBENCH_VARIABLES) - used:
        raise RuntimeError(f"the captured SQL never uses {sorted(missing)}: {statements}")
    print(json.dumps({"script": "\n".join(lines) + "\n"}))


def pgbench_statement(
    statement: str,
    params: Sequence[Any] | None,
    variables: dict[str, str],
    literal: Any,
    used: set[str],
) -> str:
    """A captured statement with its `%s` placeholders filled: a parameter equal to one of
    the update's identities becomes that pgbench variable, any other the literal sent."""
    if params is None:
        return f"{statement};"
    values = iter(params)

    def fill(match: re.Match[str]) -> str:
        if match[0] == "%%":
            return "%"
        value = next(values)
        name = variables.get(str(value)) if isinstance(value, str | uuid.UUID) else None
        if name is None:
            return str(literal(value))
        used.add(name)
        return f":{name}"

    return re.sub(r"%s|%%", fill, statement) + ";"


# --- role `load`: the load generator (aiohttp, a process of its own) --------------------------


def load(node_url: str, database_url: str, clients: int, duration: int, token_count: int) -> None:
    with psycopg.connect(database_url, autocommit=True) as connection:
        prepared = deque(claim_tokens(connection.cursor(), token_count))
    print(json.dumps(asyncio.run(_drive(node_url + UPDATE_PATH, prepared, clients, duration))))


async def _drive(
    url: str, prepared: deque[PreparedToken], clients: int, duration: int
) -> dict[str, Any]:
    import aiohttp

    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    errors: Counter[str] = Counter()

    async def client(session: aiohttp.ClientSession, deadline: float) -> None:
        while prepared and time.monotonic() < deadline:
            headers, body = signed_request(prepared.popleft())
            started = time.perf_counter()
            try:
                async with session.post(url, data=body, headers=headers) as response:
                    answer = await response.read()
            except (aiohttp.ClientError, TimeoutError) as error:
                errors[type(error).__name__] += 1
                continue
            latencies.append(time.perf_counter() - started)
            statuses[response.status] += 1
            if response.status not in (200, 202):
                errors[f"{response.status} {_error_code(answer)}"] += 1

    connector = aiohttp.TCPConnector(limit=clients)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        cpu_before = time.process_time()
        started = time.perf_counter()
        deadline = time.monotonic() + duration
        await asyncio.gather(*(client(session, deadline) for _ in range(clients)))
        elapsed = time.perf_counter() - started
        cpu_seconds = time.process_time() - cpu_before
    return {
        "elapsed": elapsed,
        "answered": sum(statuses.values()),
        "counted": statuses[200],
        "held": statuses[202],
        "errors": dict(errors),
        "latency": harness.latency_summary_ms(latencies),
        "cpu_seconds": cpu_seconds,
        "tokens_ran_out": not prepared and elapsed < duration,
    }


def _error_code(answer: bytes) -> str:
    try:
        return str(json.loads(answer)["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return answer[:80].decode(errors="replace")


def run_role(argv: Sequence[str]) -> None:
    """`--role NAME ARGS…`: the parts of the benchmark that run in processes of their own."""
    role, *args = argv
    if role == "prepare":
        prepare(int(args[0]), int(args[1]))
    elif role == "capture":
        capture()
    elif role == "load":
        load(args[0], args[1], int(args[2]), int(args[3]), int(args[4]))
    else:
        raise SystemExit(f"unknown role {role!r}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--role"]:
        run_role(sys.argv[2:])
    else:
        main()
