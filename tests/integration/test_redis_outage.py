"""An error from a Redis that answers pauses only the user that met it: the feed store on the
same client keeps using Redis (real Redis; the shared pause for an unreachable Redis is in
tests/unit/test_redis_outage.py)."""

from __future__ import annotations

import secrets
from pathlib import Path

from tests.conftest import make_settings
from tests.support.rowcache import Loader, drop_keys
from tidings.core.cache import RowCache
from tidings.core.redispool import connect
from tidings.feeds.store import FeedStore

REDIS_URL = "redis://127.0.0.1:6379/0"


async def test_a_wrong_type_pauses_the_row_cache_and_not_the_feed_store(tmp_path: Path) -> None:
    redis = connect(REDIS_URL, max_connections=4)
    prefix = f"test:outage:{secrets.token_hex(6)}:"
    settings = make_settings(tmp_path, "sqlite+aiosqlite:///unused.db", feed_key_prefix=prefix)
    try:
        cache = RowCache(redis, prefix=prefix, ttl_seconds=60)
        store = FeedStore(redis, settings)
        await redis.rpush(cache.key("post", 7), "not a row")  # a list where a string belongs
        loader = Loader({7: {"id": 7}})
        assert await cache.get_many("post", [7], loader) == {7: {"id": 7}}  # from the loader
        assert not cache.available  # WRONGTYPE: the row cache pauses
        assert store.available  # Redis answers: the feed store goes on
        assert await store.celebs() == []  # and really reads it
    finally:
        await drop_keys(redis, prefix)
        await redis.aclose(close_connection_pool=True)
