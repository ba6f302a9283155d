import logging
from importlib import import_module

from django.apps import AppConfig
from django.conf import settings
from django.core.signals import request_finished

# The Redis client stack, imported once at start-up. Imported lazily instead, the first
# requests served on several threads at once can deadlock on these modules' import locks.
REDIS_CLIENT_MODULES = ("redis", "redis.asyncio", "django_redis.cache", "channels_redis.pubsub")


class ScoreboardConfig(AppConfig):
    name = "scoreboard"

    def ready(self) -> None:
        from scoreboard import metrics

        # Python warnings become log records (logger `py.warnings`), in the configured format.
        logging.captureWarnings(True)

        # After Django's own receiver, which gives the request's connection back to its pool.
        request_finished.connect(
            metrics.database_pools_sampled, dispatch_uid="scoreboard.metrics.database_pools"
        )
        if settings.REDIS_URL:
            for module in REDIS_CLIENT_MODULES:
                import_module(module)
