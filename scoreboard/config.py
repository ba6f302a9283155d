"""Turn environment variables into Django settings.

Pure functions over a mapping, so every settings mode can be tested without reloading the
settings module. `settings.py` calls them with `os.environ`.
"""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

TRUE_WORDS = {"1", "true", "yes", "on"}
FALSE_WORDS = {"0", "false", "no", "off", ""}
RATE_PERIODS = {"sec": 1, "min": 60, "hour": 3600, "day": 86400}
_RATE = re.compile(r"([1-9][0-9]{0,8})/(sec|min|hour|day)")

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class Rate(NamedTuple):
    """A rate-limit setting: at most `limit` requests per fixed window of `window_seconds`."""

    limit: int
    window_seconds: int


def env_bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None:
        return default
    word = raw.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean (use 1/0, true/false, yes/no).")


def env_int(env: Mapping[str, str], name: str, default: int, *, minimum: int = 0) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not an integer.") from None
    if value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, got {value}.")
    return value


def env_choice(env: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    value = env.get(name, "").strip().lower() or default
    if value not in choices:
        raise ImproperlyConfigured(f"{name}={value!r} is not one of {', '.join(choices)}.")
    return value


def env_list(env: Mapping[str, str], name: str) -> list[str]:
    return [item.strip() for item in env.get(name, "").split(",") if item.strip()]


def rate(env: Mapping[str, str], name: str, default: str) -> Rate:
    """`N/sec`, `N/min`, `N/hour` or `N/day`, with N a positive integer; nothing else."""
    raw = env.get(name, "").strip() or default
    match = _RATE.fullmatch(raw)
    if match is None:
        raise ImproperlyConfigured(
            f"{name}={raw!r} is not a rate: use N/sec, N/min, N/hour or N/day (N ≥ 1)."
        )
    return Rate(int(match[1]), RATE_PERIODS[match[2]])


def trusted_proxies(env: Mapping[str, str]) -> tuple[IPNetwork, ...]:
    """SCOREBOARD_TRUSTED_PROXIES: comma-separated IPv4/IPv6 addresses or CIDR networks.

    Strict: a network with host bits set (`10.0.0.1/8`) is refused rather than guessed at.
    """
    networks = []
    for entry in env_list(env, "SCOREBOARD_TRUSTED_PROXIES"):
        try:
            networks.append(ipaddress.ip_network(entry))
        except ValueError as error:
            raise ImproperlyConfigured(
                f"SCOREBOARD_TRUSTED_PROXIES: {entry!r} is not an IP address or network ({error})."
            ) from None
    return tuple(networks)


def redis_key_prefix(env: Mapping[str, str]) -> str:
    return env.get("REDIS_KEY_PREFIX", "scoreboard")


def database_config(
    env: Mapping[str, str], *, base_dir: Path, variable: str = "DATABASE_URL"
) -> dict[str, Any]:
    """SQLite (a file in the project, or `sqlite:////path`) or PostgreSQL (`postgres://…`),
    from the URL in `variable`.

    Under ASGI a persistent connection per request thread leaks connections, so PostgreSQL
    uses Django's psycopg pool (which requires CONN_MAX_AGE=0) with a short wait, so that an
    exhausted pool fails fast with a 503 instead of hanging for psycopg's default 30 s; a row
    lock is waited for at most DB_LOCK_TIMEOUT_MS, for the same reason.
    """
    url = env.get(variable, "").strip()
    if not url:
        return _sqlite_config(base_dir / "var" / "scoreboard.sqlite3")
    config: dict[str, Any] = dict(dj_database_url.parse(url))
    if config["ENGINE"] == "django.db.backends.sqlite3":
        return _sqlite_config(Path(config["NAME"]))
    if config["ENGINE"] != "django.db.backends.postgresql":
        raise ImproperlyConfigured(
            f"{variable} must be a postgres:// or sqlite:// URL (got engine {config['ENGINE']})."
        )
    config["CONN_MAX_AGE"] = 0
    config["CONN_HEALTH_CHECKS"] = False
    config["OPTIONS"] = {
        "connect_timeout": env_int(env, "DB_CONNECT_TIMEOUT", 3, minimum=1),
        "pool": {
            "min_size": env_int(env, "DB_POOL_MIN_SIZE", 2, minimum=0),
            "max_size": env_int(env, "DB_POOL_MAX_SIZE", 10, minimum=1),
            "timeout": env_int(env, "DB_POOL_TIMEOUT", 5, minimum=1),
        },
    }
    lock_timeout_ms = env_int(env, "DB_LOCK_TIMEOUT_MS", 2000, minimum=0)
    if lock_timeout_ms:
        # A statement waiting longer for a row lock (a hot player, a moderator's decision)
        # fails, and the request answers 503, instead of holding its connection until the
        # lock is gone. 0 sends nothing: for poolers that refuse startup options, set
        # lock_timeout on the database role instead.
        config["OPTIONS"]["options"] = f"-c lock_timeout={lock_timeout_ms}"
    return config


def replica_database_config(env: Mapping[str, str], *, base_dir: Path) -> dict[str, Any] | None:
    """DATABASE_REPLICA_URL, a read replica for the REST board reads, with the same pool and
    timeouts as the primary; None when unset.

    Under test the alias mirrors `default`: the test runner then creates no database for it,
    and replica reads see the test's own writes instead of an empty, unmigrated database.
    """
    if not env.get("DATABASE_REPLICA_URL", "").strip():
        return None
    replica = database_config(env, base_dir=base_dir, variable="DATABASE_REPLICA_URL")
    return {**replica, "TEST": {"MIRROR": "default"}}


def _sqlite_config(path: Path) -> dict[str, Any]:
    path.parent.mkdir(parents=True, exist_ok=True)  # SQLite creates the file, not its folder
    return {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": str(path),
        "OPTIONS": {
            # WAL lets readers run beside the single writer; the timeout makes a writer wait
            # for the lock instead of failing at once.
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            "transaction_mode": "IMMEDIATE",
            "timeout": 10,
        },
    }


def cache_config(env: Mapping[str, str]) -> dict[str, Any]:
    redis_url = env.get("REDIS_URL", "").strip()
    if not redis_url:
        return {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    timeout = env_int(env, "REDIS_SOCKET_TIMEOUT", 2, minimum=1)
    return {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": redis_url,
            "KEY_PREFIX": redis_key_prefix(env),
            "OPTIONS": {
                "CLIENT_CLASS": "django_redis.client.DefaultClient",
                "SOCKET_CONNECT_TIMEOUT": timeout,
                "SOCKET_TIMEOUT": timeout,
            },
        }
    }


def channel_layers_config(env: Mapping[str, str]) -> dict[str, Any]:
    """In-memory layer in one process; Redis pub/sub across nodes (one publish per group)."""
    redis_url = env.get("REDIS_URL", "").strip()
    if not redis_url:
        return {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    return {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": [redis_url], "prefix": redis_key_prefix(env)},
        }
    }


def secret(
    env: Mapping[str, str],
    name: str,
    *,
    debug: bool,
    dev_secret_file: Path,
    min_length: int = 32,
) -> str:
    """A required secret, or a persisted development one when DEBUG is on.

    The development value is written once to a file so that several local processes (and
    restarts) agree on it; tokens issued by one node stay valid on another.
    """
    value = env.get(name, "").strip()
    if value:
        if len(value) < min_length:
            raise ImproperlyConfigured(f"{name} must be at least {min_length} characters long.")
        return value
    if not debug:
        raise ImproperlyConfigured(
            f"{name} is not set. With DEBUG off it is required: generate one with "
            f'`python -c "import secrets; print(secrets.token_urlsafe(50))"` and set it in '
            "the environment."
        )
    generated = _development_secret(dev_secret_file)
    banner = "*" * 78
    print(
        f"{banner}\nWARNING: {name} is not set; using a generated development key from "
        f"{dev_secret_file}.\nNever run like this in production: set DEBUG=0 and the secrets."
        f"\n{banner}",
        file=sys.stderr,
    )
    return generated


def _development_secret(path: Path) -> str:
    """Read the file, or create it atomically (link a finished temp file) so racing processes
    all end up with the same value."""
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(secrets.token_urlsafe(50))
    temporary.chmod(0o600)
    try:
        os.link(temporary, path)
    except FileExistsError:
        pass
    finally:
        temporary.unlink()
    return path.read_text().strip()


def allowed_hosts(env: Mapping[str, str], *, debug: bool) -> list[str]:
    hosts = env_list(env, "ALLOWED_HOSTS")
    if hosts:
        return hosts
    if debug:
        return ["localhost", "127.0.0.1", "[::1]", "testserver"]
    raise ImproperlyConfigured(
        "ALLOWED_HOSTS is not set. With DEBUG off it is required: a comma-separated list of "
        "the host names this service answers to (e.g. scores.example.com)."
    )
