"""Each settings mode, from the pure functions that settings.py calls."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from scoreboard import config


def test_no_database_url_means_a_sqlite_file_in_the_project(tmp_path: Path) -> None:
    database = config.database_config({}, base_dir=tmp_path)

    assert database["ENGINE"] == "django.db.backends.sqlite3"
    assert database["NAME"] == str(tmp_path / "var" / "scoreboard.sqlite3")
    assert (tmp_path / "var").is_dir()  # SQLite creates the file, not its folder


def test_sqlite_url_names_the_file(tmp_path: Path) -> None:
    env = {"DATABASE_URL": f"sqlite:///{tmp_path}/elsewhere/scores.sqlite3"}

    database = config.database_config(env, base_dir=tmp_path / "project")

    assert database["ENGINE"] == "django.db.backends.sqlite3"
    assert database["NAME"] == str(tmp_path / "elsewhere" / "scores.sqlite3")
    assert (tmp_path / "elsewhere").is_dir()
    assert database["OPTIONS"]["transaction_mode"] == "IMMEDIATE"


def test_postgres_url_means_psycopg_with_a_pool_that_fails_fast(tmp_path: Path) -> None:
    env = {"DATABASE_URL": "postgres://scores:pw@db.internal:5433/scoreboard"}

    database = config.database_config(env, base_dir=tmp_path)

    assert database["ENGINE"] == "django.db.backends.postgresql"
    assert (database["HOST"], database["PORT"], database["NAME"]) == (
        "db.internal",
        5433,
        "scoreboard",
    )
    assert (database["USER"], database["PASSWORD"]) == ("scores", "pw")
    assert database["CONN_MAX_AGE"] == 0
    assert database["OPTIONS"]["pool"] == {"min_size": 2, "max_size": 10, "timeout": 5}
    assert database["OPTIONS"]["connect_timeout"] == 3
    assert database["OPTIONS"]["options"] == "-c lock_timeout=2000"


def test_pool_sizes_come_from_the_environment(tmp_path: Path) -> None:
    env = {
        "DATABASE_URL": "postgres://localhost/scoreboard",
        "DB_POOL_MAX_SIZE": "40",
        "DB_POOL_TIMEOUT": "2",
    }

    pool = config.database_config(env, base_dir=tmp_path)["OPTIONS"]["pool"]

    assert (pool["max_size"], pool["timeout"]) == (40, 2)


@pytest.mark.parametrize(("value", "options"), [("500", "-c lock_timeout=500"), ("0", None)])
def test_the_lock_timeout_comes_from_the_environment_and_0_sends_none(
    tmp_path: Path, value: str, options: str | None
) -> None:
    env = {"DATABASE_URL": "postgres://localhost/scoreboard", "DB_LOCK_TIMEOUT_MS": value}

    database = config.database_config(env, base_dir=tmp_path)

    assert database["OPTIONS"].get("options") == options


@pytest.mark.parametrize(
    "env",
    [
        {"DATABASE_URL": "mysql://localhost/scoreboard"},
        {"DATABASE_URL": "postgres://localhost/db", "DB_POOL_MAX_SIZE": "lots"},
        {"DATABASE_URL": "postgres://localhost/db", "DB_POOL_MAX_SIZE": "0"},
    ],
)
def test_unusable_database_settings_refuse_to_start(env: dict[str, str], tmp_path: Path) -> None:
    with pytest.raises(ImproperlyConfigured):
        config.database_config(env, base_dir=tmp_path)


def test_no_redis_url_means_local_memory_cache_and_in_memory_layer() -> None:
    assert config.cache_config({})["default"]["BACKEND"] == (
        "django.core.cache.backends.locmem.LocMemCache"
    )
    assert config.channel_layers_config({})["default"]["BACKEND"] == (
        "channels.layers.InMemoryChannelLayer"
    )


def test_redis_url_means_django_redis_cache_and_pubsub_layer() -> None:
    env = {"REDIS_URL": "redis://cache.internal:6379/2"}

    cache = config.cache_config(env)["default"]
    layer = config.channel_layers_config(env)["default"]

    assert cache["BACKEND"] == "django_redis.cache.RedisCache"
    assert cache["LOCATION"] == "redis://cache.internal:6379/2"
    assert cache["OPTIONS"]["SOCKET_TIMEOUT"] == 2
    assert layer["BACKEND"] == "channels_redis.pubsub.RedisPubSubChannelLayer"
    assert layer["CONFIG"]["hosts"] == ["redis://cache.internal:6379/2"]


def test_a_set_secret_is_used_as_given(tmp_path: Path) -> None:
    value = "s" * 40

    assert config.secret({"KEY": value}, "KEY", debug=False, dev_secret_file=tmp_path / "k") == (
        value
    )
    assert not (tmp_path / "k").exists()


def test_a_missing_secret_refuses_to_start_with_debug_off(tmp_path: Path) -> None:
    with pytest.raises(ImproperlyConfigured, match="KEY is not set"):
        config.secret({}, "KEY", debug=False, dev_secret_file=tmp_path / "k")


def test_a_short_secret_refuses_to_start(tmp_path: Path) -> None:
    with pytest.raises(ImproperlyConfigured, match="at least 32"):
        config.secret({"KEY": "short"}, "KEY", debug=True, dev_secret_file=tmp_path / "k")


def test_debug_generates_one_development_secret_and_keeps_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    secret_file = tmp_path / "dev" / "KEY"

    first = config.secret({}, "KEY", debug=True, dev_secret_file=secret_file)
    second = config.secret({}, "KEY", debug=True, dev_secret_file=secret_file)

    assert first == second
    assert len(first) >= 50
    assert secret_file.read_text() == first
    assert "WARNING: KEY is not set" in capsys.readouterr().err


def test_allowed_hosts_are_required_with_debug_off() -> None:
    with pytest.raises(ImproperlyConfigured, match="ALLOWED_HOSTS is not set"):
        config.allowed_hosts({}, debug=False)
    assert config.allowed_hosts({"ALLOWED_HOSTS": "a.example, b.example"}, debug=False) == [
        "a.example",
        "b.example",
    ]
    assert "127.0.0.1" in config.allowed_hosts({}, debug=True)


@pytest.mark.parametrize(("raw", "expected"), [("1", True), ("off", False), ("TRUE", True)])
def test_booleans_are_read_strictly(raw: str, expected: bool) -> None:
    assert config.env_bool({"DEBUG": raw}, "DEBUG", default=False) is expected


def test_a_boolean_that_is_not_one_refuses_to_start() -> None:
    with pytest.raises(ImproperlyConfigured, match="not a boolean"):
        config.env_bool({"DEBUG": "maybe"}, "DEBUG", default=False)
