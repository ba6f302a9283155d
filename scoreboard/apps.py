from importlib import import_module

from django.apps import AppConfig
from django.conf import settings

# The Redis client stack, imported once at start-up. Imported lazily instead, the first
# requests served on several threads at once can deadlock on these modules' import locks.
REDIS_CLIENT_MODULES = ("redis", "redis.asyncio", "django_redis.cache", "channels_redis.pubsub")


class ScoreboardConfig(AppConfig):
    name = "scoreboard"

    def ready(self) -> None:
        if settings.REDIS_URL:
            for module in REDIS_CLIENT_MODULES:
                import_module(module)
