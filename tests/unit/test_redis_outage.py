"""The row cache and the feed store on one Redis client skip it together after a failure, so
a request pays the client's timeouts once, not once per user of the client."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.conftest import make_settings
from tests.support.rowcache import Loader
from tidings.core.cache import RowCache
from tidings.core.redispool import connect
from tidings.feeds.store import FeedStore


async def test_a_failure_in_the_row_cache_pauses_the_feed_store_on_the_same_client(
    tmp_path: Path,
) -> None:
    connections = 0

    async def hang_up(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        writer.close()  # a Redis that drops every connection

    server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    redis = connect(f"redis://127.0.0.1:{port}/0", max_connections=4)
    settings = make_settings(tmp_path, "sqlite+aiosqlite:///unused.db")
    try:
        cache = RowCache(redis, prefix="t:", ttl_seconds=60)
        store = FeedStore(redis, settings)
        other = FeedStore(connect(f"redis://127.0.0.1:{port}/0", max_connections=4), settings)
        assert cache.available
        assert store.available
        loader = Loader({7: {"id": 7}})
        assert await cache.get_many("post", [7], loader) == {7: {"id": 7}}  # from the loader
        assert connections >= 1  # it tried Redis, which failed
        assert not cache.available
        assert not store.available  # feed reads pull without trying Redis again
        assert other.available  # another client's users are not paused
        await other.redis.aclose(close_connection_pool=True)
    finally:
        await redis.aclose(close_connection_pool=True)
        server.close()
        await server.wait_closed()


def test_fan_out_defers_only_when_every_error_is_unreachability() -> None:
    """A fan-out's task group (reading followers while writing timelines) fails with a group."""
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import ResponseError

    from tidings.feeds.fanout import _unreachable

    assert _unreachable(RedisConnectionError("refused"))
    assert _unreachable(ExceptionGroup("fan-out", [RedisConnectionError("a"), TimeoutError()]))
    assert not _unreachable(ResponseError("WRONGTYPE"))
    assert not _unreachable(ExceptionGroup("fan-out", [RedisConnectionError("a"), ValueError()]))
