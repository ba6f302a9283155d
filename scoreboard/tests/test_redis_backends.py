"""The Redis-mode cache and channel layer, built from the same config the settings use,
against a real Redis."""

from __future__ import annotations

import uuid

import pytest
from channels_redis.pubsub import RedisPubSubChannelLayer
from django.core.cache.backends.base import BaseCache
from django.utils.module_loading import import_string

from scoreboard import config

pytestmark = pytest.mark.redis


def test_the_configured_cache_stores_in_redis(redis_url: str) -> None:
    settings = config.cache_config({"REDIS_URL": redis_url})["default"]
    backend_class = import_string(settings["BACKEND"])
    cache: BaseCache = backend_class(settings["LOCATION"], settings)
    key = f"test-{uuid.uuid4().hex}"

    cache.set(key, {"score": 42}, timeout=30)

    assert cache.get(key) == {"score": 42}
    assert cache.client.get_client().exists(f"scoreboard:1:{key}") == 1  # type: ignore[attr-defined]
    cache.delete(key)


async def test_the_configured_channel_layer_delivers_group_messages(redis_url: str) -> None:
    layer_config = config.channel_layers_config({"REDIS_URL": redis_url})["default"]
    assert import_string(layer_config["BACKEND"]) is RedisPubSubChannelLayer
    sender = RedisPubSubChannelLayer(**layer_config["CONFIG"])
    receiver = RedisPubSubChannelLayer(**layer_config["CONFIG"])
    group = f"test-{uuid.uuid4().hex}"
    channel = await receiver.new_channel()
    await receiver.group_add(group, channel)
    try:
        await sender.group_send(group, {"type": "board.update", "seq": 1})

        message = await receiver.receive(channel)
    finally:
        await receiver.group_discard(group, channel)
        await sender.flush()
        await receiver.flush()

    assert message == {"type": "board.update", "seq": 1}
