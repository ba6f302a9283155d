"""Settings, all from the environment (see docs/configuration.md).

With no variables at all the whole product runs in one process: SQLite, local-memory cache,
in-memory channel layer, SQL leaderboard backend, DEBUG on with generated development keys.
`DATABASE_URL` and `REDIS_URL` switch to PostgreSQL and Redis.
"""

import os
import socket
from datetime import timedelta
from pathlib import Path

from scoreboard import config

BASE_DIR = Path(__file__).resolve().parent.parent
ENV = os.environ

DEBUG = config.env_bool(ENV, "DEBUG", True)
DEV_SECRETS_DIR = BASE_DIR / "var" / "dev-secrets"

SECRET_KEY = config.secret(
    ENV, "SECRET_KEY", debug=DEBUG, dev_secret_file=DEV_SECRETS_DIR / "SECRET_KEY"
)
SECRET_KEY_FALLBACKS = config.env_list(ENV, "SECRET_KEY_FALLBACKS")
JWT_SIGNING_KEY = config.secret(
    ENV,
    "SCOREBOARD_JWT_SIGNING_KEY",
    debug=DEBUG,
    dev_secret_file=DEV_SECRETS_DIR / "SCOREBOARD_JWT_SIGNING_KEY",
)
# Encrypts secrets stored in the database (see scoreboard/encryption.py).
SCOREBOARD_ENCRYPTION_KEY = config.secret(
    ENV,
    "SCOREBOARD_ENCRYPTION_KEY",
    debug=DEBUG,
    dev_secret_file=DEV_SECRETS_DIR / "SCOREBOARD_ENCRYPTION_KEY",
)
SCOREBOARD_ENCRYPTION_KEY_FALLBACKS = config.env_list(ENV, "SCOREBOARD_ENCRYPTION_KEY_FALLBACKS")
ALLOWED_HOSTS = config.allowed_hosts(ENV, debug=DEBUG)
CSRF_TRUSTED_ORIGINS = config.env_list(ENV, "CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "corsheaders",
    "rest_framework",
    "rest_framework_simplejwt.token_blacklist",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "channels",
    "scoreboard",
    "accounts",
    "scoring",
    "leaderboard",
    "realtime",
]

MIDDLEWARE = [
    # Outermost, so that every answer is counted, whoever gives it.
    "scoreboard.metrics.HttpMetricsMiddleware",
    "scoreboard.middleware.RequestIdMiddleware",
    # Before the envelope and the rate limits: preflights are answered without counting
    # against a limit, and error answers carry CORS headers so browser clients can read them.
    "corsheaders.middleware.CorsMiddleware",
    "scoreboard.middleware.ApiErrorEnvelopeMiddleware",
    "scoreboard.middleware.RateLimitMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "scoreboard.urls"
ASGI_APPLICATION = "scoreboard.asgi.application"
WSGI_APPLICATION = "scoreboard.wsgi.application"
APPEND_SLASH = False

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {"default": config.database_config(ENV, base_dir=BASE_DIR)}
# Optional read replica: only the REST board reads use it, by name (leaderboard/replica.py);
# no database router, so writes and reads inside write transactions stay on `default`.
if (REPLICA_DATABASE := config.replica_database_config(ENV, base_dir=BASE_DIR)) is not None:
    DATABASES["replica"] = REPLICA_DATABASE
CACHES = config.cache_config(ENV)
CHANNEL_LAYERS = config.channel_layers_config(ENV)
REDIS_URL = ENV.get("REDIS_URL", "").strip() or None
REDIS_KEY_PREFIX = config.redis_key_prefix(ENV)

# Rate limits (DESIGN.md §4, scoreboard/ratelimit.py): fixed windows, shared through Redis
# when REDIS_URL is set, per process otherwise.
SCOREBOARD_RATE_SCORE_UPDATES = config.rate(ENV, "SCOREBOARD_RATE_SCORE_UPDATES", "10/min")
SCOREBOARD_RATE_API_PER_IP = config.rate(ENV, "SCOREBOARD_RATE_API_PER_IP", "100/min")
SCOREBOARD_RATE_API_PER_INSTANCE = config.rate(ENV, "SCOREBOARD_RATE_API_PER_INSTANCE", "10000/min")
SCOREBOARD_AUTH_RATE = config.rate(ENV, "SCOREBOARD_AUTH_RATE", "20/min")
# Names the instance of the instance-wide limit; with Redis, processes sharing it share a count.
SCOREBOARD_INSTANCE_ID = ENV.get("SCOREBOARD_INSTANCE_ID", "").strip() or socket.gethostname()
# Peers whose X-Forwarded-For is believed (scoreboard/client_ip.py).
SCOREBOARD_TRUSTED_PROXIES = config.trusted_proxies(ENV)

# Live boards (DESIGN.md §5, realtime/): one `leaderboard.update` per channel per interval,
# cluster-wide; the per-socket limits bound what one client can cost the server.
SCOREBOARD_BROADCAST_INTERVAL_MS = config.env_int(
    ENV, "SCOREBOARD_BROADCAST_INTERVAL_MS", 1000, minimum=50
)
# Credentials and the user's status are re-checked, and stuck sockets closed, this often.
SCOREBOARD_WS_HEARTBEAT_SECONDS = config.env_int(
    ENV, "SCOREBOARD_WS_HEARTBEAT_SECONDS", 30, minimum=1
)
# Client frames (subscribe, unsubscribe, ping) a socket may send; more closes it with 4429.
SCOREBOARD_WS_CLIENT_MESSAGE_RATE = config.rate(ENV, "SCOREBOARD_WS_CLIENT_MESSAGE_RATE", "60/min")
SCOREBOARD_WS_MAX_SUBSCRIPTIONS = config.env_int(
    ENV, "SCOREBOARD_WS_MAX_SUBSCRIPTIONS", 16, minimum=1
)
# Broadcasts waiting for one slow client; one more closes it (4408, SSE: the stream ends).
SCOREBOARD_LIVE_SEND_QUEUE = config.env_int(ENV, "SCOREBOARD_LIVE_SEND_QUEUE", 16, minimum=1)
# `?token=<jwt>` puts the token in access logs: off unless a client cannot do better.
SCOREBOARD_WS_ALLOW_QUERY_TOKEN = config.env_bool(ENV, "SCOREBOARD_WS_ALLOW_QUERY_TOKEN", False)

# Prometheus metrics (scoreboard/metrics.py, docs/operations.md): with a token, `/metrics` asks
# for it as a bearer token; without one it is served only with DEBUG on.
SCOREBOARD_METRICS_TOKEN = ENV.get("SCOREBOARD_METRICS_TOKEN", "").strip() or None

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "accounts.User"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(ENV.get("STATIC_ROOT", "").strip() or BASE_DIR / "staticfiles")
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}
WHITENOISE_USE_FINDERS = DEBUG

# Bodies over 64 KiB are refused with 413 (DESIGN.md §4).
MAX_REQUEST_BODY_BYTES = 64 * 1024
DATA_UPLOAD_MAX_MEMORY_SIZE = MAX_REQUEST_BODY_BYTES
# How long an Idempotency-Key is remembered (scoreboard/idempotency.py).
SCOREBOARD_IDEMPOTENCY_TTL_SECONDS = config.env_int(
    ENV, "SCOREBOARD_IDEMPOTENCY_TTL_SECONDS", 24 * 3600, minimum=1
)

# Production hardening (docs/deploy.md). TLS ends at the load balancer: it redirects HTTP to
# HTTPS, and tells the app the scheme in X-Forwarded-Proto when SCOREBOARD_BEHIND_TLS_PROXY=1
# (only safe when every request comes through that proxy, which overwrites the header).
SECURE_CONTENT_TYPE_NOSNIFF = True
SESSION_COOKIE_SECURE = not DEBUG
CSRF_COOKIE_SECURE = not DEBUG
SESSION_COOKIE_HTTPONLY = True
SECURE_HSTS_SECONDS = config.env_int(ENV, "SECURE_HSTS_SECONDS", 0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = config.env_bool(ENV, "SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = config.env_bool(ENV, "SECURE_HSTS_PRELOAD", False)
SECURE_SSL_REDIRECT = config.env_bool(ENV, "SECURE_SSL_REDIRECT", False)
if config.env_bool(ENV, "SCOREBOARD_BEHIND_TLS_PROXY", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# Health probes come from the load balancer or orchestrator over plain HTTP.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]

# Browser game clients on other origins (django-cors-headers): none unless listed. Only the
# API answers cross-origin requests; tokens travel in headers, never cookies.
CORS_ALLOWED_ORIGINS = config.env_list(ENV, "CORS_ALLOWED_ORIGINS")
CORS_URLS_REGEX = r"^/api/.*$"
CORS_ALLOW_CREDENTIALS = False
CORS_ALLOW_HEADERS = (
    "accept",
    "authorization",
    "content-type",
    "idempotency-key",
    "x-action-token",
    "x-request-id",
)
CORS_EXPOSE_HEADERS = (
    "Retry-After",
    "X-Request-ID",
    "X-RateLimit-Limit",
    "X-RateLimit-Remaining",
    "X-RateLimit-Reset",
)
CORS_PREFLIGHT_MAX_AGE = 600

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["accounts.authentication.JWTAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "scoreboard.errors.api_exception_handler",
    # Rate limits are scoreboard/ratelimit.py, not DRF throttles; should a throttle ever be
    # added, its client identity stays REMOTE_ADDR (DRF's default believes X-Forwarded-For).
    "NUM_PROXIES": 0,
    "UNAUTHENTICATED_USER": None,
    "NON_FIELD_ERRORS_KEY": "nonFieldErrors",  # scoreboard.errors.NON_FIELD_ERRORS
}

# Score pipeline (DESIGN.md §2, §4): token lifetime and how fresh signed timestamps must be.
SCOREBOARD_ACTION_TOKEN_SECONDS = config.env_int(
    ENV, "SCOREBOARD_ACTION_TOKEN_SECONDS", 300, minimum=10
)
SCOREBOARD_PROOF_MAX_AGE_SECONDS = config.env_int(
    ENV, "SCOREBOARD_PROOF_MAX_AGE_SECONDS", 60, minimum=1
)
SCOREBOARD_SCORE_TIMESTAMP_MAX_AGE_SECONDS = config.env_int(
    ENV, "SCOREBOARD_SCORE_TIMESTAMP_MAX_AGE_SECONDS", 300, minimum=1
)
SCOREBOARD_CLOCK_SKEW_SECONDS = config.env_int(ENV, "SCOREBOARD_CLOCK_SKEW_SECONDS", 10)

# Retention (docs/privacy.md, `manage.py apply_retention`): action tokens are deleted this many
# days after they expired; score updates lose their IP address and user agent at this age.
SCOREBOARD_ACTION_TOKEN_RETENTION_DAYS = config.env_int(
    ENV, "SCOREBOARD_ACTION_TOKEN_RETENTION_DAYS", 30, minimum=1
)
SCOREBOARD_AUDIT_DETAIL_RETENTION_DAYS = config.env_int(
    ENV, "SCOREBOARD_AUDIT_DETAIL_RETENTION_DAYS", 90, minimum=1
)

# Anomaly rules (DESIGN.md §6, scoring/anomaly.py, docs/scoring.md "Anomaly rules"). Every rule
# that trips adds its weight to an update's risk: at the flag threshold the update counts and
# is FLAGGED for a moderator, at the hold threshold it is HELD (not counted until approved).
# The defaults never trip for a player who acts at most once every 30 s, no faster than the
# catalog's minimum durations, from one address.
SCOREBOARD_ANOMALY_FLAG_THRESHOLD = config.env_int(
    ENV, "SCOREBOARD_ANOMALY_FLAG_THRESHOLD", 30, minimum=1
)
SCOREBOARD_ANOMALY_HOLD_THRESHOLD = config.env_int(
    ENV, "SCOREBOARD_ANOMALY_HOLD_THRESHOLD", 80, minimum=1
)
# POINTS_PER_WINDOW: more points than this within the sliding window.
SCOREBOARD_ANOMALY_POINTS_LIMIT = config.env_int(
    ENV, "SCOREBOARD_ANOMALY_POINTS_LIMIT", 2000, minimum=1
)
SCOREBOARD_ANOMALY_POINTS_WINDOW_SECONDS = config.env_int(
    ENV, "SCOREBOARD_ANOMALY_POINTS_WINDOW_SECONDS", 600, minimum=1
)
SCOREBOARD_ANOMALY_POINTS_WEIGHT = config.env_int(ENV, "SCOREBOARD_ANOMALY_POINTS_WEIGHT", 50)
# TOO_FAST: an action of one type again sooner than its catalog minimum duration.
SCOREBOARD_ANOMALY_TOO_FAST_WEIGHT = config.env_int(ENV, "SCOREBOARD_ANOMALY_TOO_FAST_WEIGHT", 30)
# REPEATED_ACTION: one action type more often than this within the sliding window.
SCOREBOARD_ANOMALY_REPEAT_LIMIT = config.env_int(
    ENV, "SCOREBOARD_ANOMALY_REPEAT_LIMIT", 15, minimum=1
)
SCOREBOARD_ANOMALY_REPEAT_WINDOW_SECONDS = config.env_int(
    ENV, "SCOREBOARD_ANOMALY_REPEAT_WINDOW_SECONDS", 300, minimum=1
)
SCOREBOARD_ANOMALY_REPEAT_WEIGHT = config.env_int(ENV, "SCOREBOARD_ANOMALY_REPEAT_WEIGHT", 30)
# ACTION_DAILY_CAP: more updates of one action type in a UTC day than its catalog cap.
SCOREBOARD_ANOMALY_DAILY_CAP_WEIGHT = config.env_int(ENV, "SCOREBOARD_ANOMALY_DAILY_CAP_WEIGHT", 30)
# IP_HOP: another address than the previous update's, that update being this recent.
SCOREBOARD_ANOMALY_IP_WINDOW_SECONDS = config.env_int(
    ENV, "SCOREBOARD_ANOMALY_IP_WINDOW_SECONDS", 300, minimum=1
)
SCOREBOARD_ANOMALY_IP_WEIGHT = config.env_int(ENV, "SCOREBOARD_ANOMALY_IP_WEIGHT", 20)

# Leaderboards: how many entries an archived period keeps.
SCOREBOARD_SNAPSHOT_SIZE = config.env_int(ENV, "SCOREBOARD_SNAPSHOT_SIZE", 100, minimum=1)

SIMPLE_JWT = {
    "ALGORITHM": "HS256",
    "SIGNING_KEY": JWT_SIGNING_KEY,
    "VERIFYING_KEY": "",
    "AUDIENCE": "scoreboard-client",
    "ISSUER": "scoreboard-api",
    "ACCESS_TOKEN_LIFETIME": timedelta(
        seconds=config.env_int(ENV, "SCOREBOARD_ACCESS_TOKEN_SECONDS", 24 * 3600, minimum=60)
    ),
    "REFRESH_TOKEN_LIFETIME": timedelta(
        seconds=config.env_int(ENV, "SCOREBOARD_REFRESH_TOKEN_SECONDS", 14 * 86400, minimum=60)
    ),
    "ROTATE_REFRESH_TOKENS": True,
    "BLACKLIST_AFTER_ROTATION": True,
    "UPDATE_LAST_LOGIN": False,
    "USER_ID_FIELD": "id",
    "USER_ID_CLAIM": "sub",
    "AUTH_HEADER_TYPES": ("Bearer",),
    "CHECK_USER_IS_ACTIVE": True,
    # Tokens carry a digest of the password hash: changing or erasing a password revokes them.
    "CHECK_REVOKE_TOKEN": True,
    "LEEWAY": 0,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Live Scoreboard API",
    "DESCRIPTION": (
        "Scores submitted by game clients, leaderboards and live updates. Every error uses "
        "the envelope described by the `ErrorResponse` schema."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    "COMPONENT_SPLIT_REQUEST": True,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "scoreboard.openapi.add_error_responses",
    ],
}

# One JSON object per line in production (for a log shipper), readable text in development.
LOG_FORMAT = config.env_choice(ENV, "LOG_FORMAT", "text" if DEBUG else "json", ("json", "text"))
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "scoreboard.request_context.RequestIdLogFilter"}},
    "formatters": {
        "json": {"()": "scoreboard.logformat.JsonFormatter"},
        "text": {"()": "scoreboard.logformat.TextFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "filters": ["request_id"],
            "formatter": LOG_FORMAT,
        },
    },
    "root": {"handlers": ["console"], "level": ENV.get("LOG_LEVEL", "INFO")},
    "loggers": {
        # Our middleware logs every request with its id; Django's request logger would repeat
        # each 4xx, so it keeps only server errors (with their tracebacks).
        "django.request": {"level": "ERROR"},
        # uvicorn configures its own handlers before Django starts; ours replace them so that
        # every line of a node has one format.
        "uvicorn": {"handlers": ["console"], "level": "INFO", "propagate": False},
        # Our request line replaces uvicorn's access log (configuring "uvicorn" above would
        # otherwise re-enable it under `--no-access-log`).
        "uvicorn.access": {"handlers": [], "propagate": False},
        # gunicorn's own lines and access log likewise: docker/gunicorn.conf.py hands this
        # whole dict to gunicorn, which configures its logging before Django starts.
        "gunicorn.error": {"handlers": ["console"], "level": "INFO", "propagate": False},
        "gunicorn.access": {"handlers": [], "propagate": False},
        # Python warnings (Django routes them to logging) in the same format, not Django's.
        "py.warnings": {"handlers": ["console"], "propagate": False},
    },
}
