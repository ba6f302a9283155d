"""Starting the real settings module in a fresh interpreter, once per mode."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SECRETS = {
    "SECRET_KEY": "k" * 50,
    "SCOREBOARD_JWT_SIGNING_KEY": "j" * 50,
    "SCOREBOARD_ENCRYPTION_KEY": "e" * 50,
    "ALLOWED_HOSTS": "scores.example.com",
}
PRINT_MODE = (
    "import django; django.setup(); from django.conf import settings as s; "
    "print(s.DEBUG, s.DATABASES['default']['ENGINE'], s.CACHES['default']['BACKEND'], "
    "s.CHANNEL_LAYERS['default']['BACKEND'], s.ALLOWED_HOSTS)"
)
CONFIG_VARIABLES = (
    "DEBUG",
    "SECRET_KEY",
    "SCOREBOARD_JWT_SIGNING_KEY",
    "SCOREBOARD_ENCRYPTION_KEY",
    "ALLOWED_HOSTS",
    "DATABASE_URL",
    "REDIS_URL",
    "LOG_FORMAT",
)


def start(**env: str) -> subprocess.CompletedProcess[str]:
    return run_with_settings(PRINT_MODE, **env)


def run_with_settings(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run `code` in a fresh interpreter under the real settings, configured only by `env`."""
    base = {k: v for k, v in os.environ.items() if k not in CONFIG_VARIABLES}
    base["DJANGO_SETTINGS_MODULE"] = "scoreboard.settings"
    return subprocess.run(  # noqa: S603
        [sys.executable, "-c", code],
        cwd=PROJECT_ROOT,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_no_variables_runs_embedded_with_a_loud_development_key_warning() -> None:
    result = start()

    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[:4] == [
        "True",
        "django.db.backends.sqlite3",
        "django.core.cache.backends.locmem.LocMemCache",
        "channels.layers.InMemoryChannelLayer",
    ]
    assert "WARNING: SECRET_KEY is not set" in result.stderr
    assert "WARNING: SCOREBOARD_JWT_SIGNING_KEY is not set" in result.stderr


@pytest.mark.parametrize(
    "missing",
    ["SECRET_KEY", "SCOREBOARD_JWT_SIGNING_KEY", "SCOREBOARD_ENCRYPTION_KEY", "ALLOWED_HOSTS"],
)
def test_debug_off_refuses_to_start_without_each_secret(missing: str) -> None:
    env = {k: v for k, v in SECRETS.items() if k != missing}

    result = start(DEBUG="0", **env)

    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert f"{missing} is not set" in result.stderr


def test_debug_off_with_every_secret_starts_quietly() -> None:
    result = start(DEBUG="0", **SECRETS)

    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[0] == "False"
    assert "WARNING" not in result.stderr


def test_database_and_redis_urls_switch_to_the_real_services() -> None:
    result = start(
        DATABASE_URL="postgres://postgres@127.0.0.1:5432/test",
        REDIS_URL="redis://127.0.0.1:6379/15",
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[1:4] == [
        "django.db.backends.postgresql",
        "django_redis.cache.RedisCache",
        "channels_redis.pubsub.RedisPubSubChannelLayer",
    ]


STRONG_SECRETS = {
    "SECRET_KEY": "s3cr3t-Kp9vQ2xLm7TzRw4YbN8cHj5Fd6Gs1Ae0Uo-Vi_Xy-Lw2Rt5",
    "SCOREBOARD_JWT_SIGNING_KEY": "jwt-Qw8Er7Ty6Ui5Op4As3Df2Gh1Jk0Lz9Xc8Vb7Nm6",
    "SCOREBOARD_ENCRYPTION_KEY": "enc-Zx1Cv2Bn3Ma4Sd5Fg6Hj7Kl8Qw9Er0Ty1Ui2Op3",
    "ALLOWED_HOSTS": "scores.example.com",
}
DEPLOY_CHECK = (
    "import django; django.setup(); from django.core.management import call_command; "
    "call_command('check', deploy=True)"
)


def deploy_warnings(tmp_path: Path, **env: str) -> set[str]:
    database = f"sqlite:///{tmp_path / 'deploy.sqlite3'}"
    result = run_with_settings(DEPLOY_CHECK, DEBUG="0", DATABASE_URL=database, **env)
    assert result.returncode == 0, result.stderr
    return set(re.findall(r"\((security\.\w+)\)", result.stderr))


def test_the_deploy_check_leaves_only_the_documented_choices(tmp_path: Path) -> None:
    # docs/deploy.md: TLS redirects happen at the load balancer; HSTS for subdomains and
    # preloading are the operator's decision about their domain.
    assert deploy_warnings(tmp_path, **STRONG_SECRETS) == {
        "security.W005",
        "security.W008",
        "security.W021",
    }
    assert (
        deploy_warnings(
            tmp_path,
            **STRONG_SECRETS,
            SECURE_HSTS_INCLUDE_SUBDOMAINS="1",
            SECURE_HSTS_PRELOAD="1",
            SECURE_SSL_REDIRECT="1",
        )
        == set()
    )
