"""The row cache on real Redis: batched reads, stampede protection, tombstones, Redis down."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection

from tests.support.rowcache import (
    BIG,
    Loader,
    check_linked,
    check_linked_without_redis,
    check_misses_load_once_then_hit,
    linked_rows,
    post_link,
)
from tidings.core.cache import TOMBSTONE, TTL_JITTER, RowCache

REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture
async def cache() -> AsyncIterator[RowCache]:
    redis = Redis.from_url(REDIS_URL, decode_responses=True)
    prefix = f"test:rowcache:{secrets.token_hex(6)}:"
    yield RowCache(redis, prefix=prefix, ttl_seconds=60)
    keys = [key async for key in redis.scan_iter(match=f"{prefix}*", count=1000)]
    if keys:
        await redis.delete(*keys)
    await redis.aclose()


async def test_misses_are_loaded_in_one_call_then_served_from_redis(cache: RowCache) -> None:
    await check_misses_load_once_then_hit(cache)


async def test_rows_filled_together_do_not_expire_together(cache: RowCache) -> None:
    ids = list(range(100))
    await cache.get_many("post", ids, Loader({i: {"id": i} for i in ids}))
    async with cache.redis.pipeline(transaction=False) as pipe:
        for i in ids:
            pipe.pttl(cache.key("post", i))
        lifetimes = sorted(await pipe.execute())
    # within the TTL, no shorter than (1 - TTL_JITTER) of it (less the test's own time)
    assert lifetimes[0] >= 60_000 * (1 - TTL_JITTER) - 5_000
    assert lifetimes[-1] <= 60_000
    assert lifetimes[-1] - lifetimes[0] > 60_000 * TTL_JITTER / 2  # spread, not one instant


async def test_a_cold_hot_key_is_loaded_once_by_concurrent_readers(cache: RowCache) -> None:
    load = Loader({7: {"id": 7}}, delay=0.02)
    results = await asyncio.gather(*(cache.get_many("post", [7], load) for _ in range(20)))
    assert all(result == {7: {"id": 7}} for result in results)
    assert load.calls == [[7]]  # one reader loaded it; the others waited for the fill


async def test_an_evicted_row_is_not_refilled_with_a_version_read_before_the_write(
    cache: RowCache,
) -> None:
    old = Loader({5: {"id": 5, "text": "old"}})
    await cache.get_many("post", [5], old)
    await cache.evict([("post", 5)])  # the writer committed
    assert await cache.redis.get(cache.key("post", 5)) == TOMBSTONE
    # a reader that loaded the row before the commit tries to fill: the tombstone wins
    assert await cache.get_many("post", [5], old) == {5: {"id": 5, "text": "old"}}
    assert await cache.redis.get(cache.key("post", 5)) == TOMBSTONE
    new = Loader({5: {"id": 5, "text": "new"}})
    assert await cache.get_many("post", [5], new) == {5: {"id": 5, "text": "new"}}
    assert new.calls == [[5]]  # tombstoned: read from the database, not from the cache


async def test_linked_rows_come_in_one_round_trip(
    cache: RowCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    await check_linked(cache)
    sends = 0
    send = AbstractConnection.send_packed_command

    async def counting_send(self: AbstractConnection, *args: Any, **kwargs: Any) -> None:
        nonlocal sends
        sends += 1
        await send(self, *args, **kwargs)

    monkeypatch.setattr(AbstractConnection, "send_packed_command", counting_send)
    posts, profiles = linked_rows()
    link = post_link(Loader(posts), Loader(profiles))
    # all cached by now (BIG + 3 was just evicted: its author would cost a second read)
    asked, referenced, owners = await cache.get_linked(link, [BIG + 2, BIG + 6])
    assert sends == 1
    assert sorted(referenced) == [BIG + 4]
    assert sorted(owners) == [BIG + 10, BIG + 11, BIG + 13]
    assert sorted(asked) == [BIG + 2, BIG + 6]


async def test_linked_rows_with_redis_down_come_from_the_loaders() -> None:
    redis = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.5)
    await check_linked_without_redis(RowCache(redis, prefix="test:down:", ttl_seconds=60))
    await redis.aclose()


async def test_redis_down_reads_from_the_loader() -> None:
    redis = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.5)
    cache = RowCache(redis, prefix="test:down:", ttl_seconds=60)
    load = Loader({1: {"id": 1}})
    for _ in range(2):
        assert await cache.get_many("post", [1], load) == {1: {"id": 1}}
    assert load.calls == [[1], [1]]
    assert not cache.available  # skipped for a few seconds after the failure
    await cache.evict([("post", 1)])  # a lost eviction is logged, not raised
    await redis.aclose()


async def test_several_kinds_are_read_together_and_misses_loaded_per_kind(
    cache: RowCache,
) -> None:
    posts = Loader({1: {"id": 1}, 2: {"id": 2}})
    users = Loader({7: {"id": 7, "name": "ann"}})
    first = await cache.get_groups([("post", [1, 2], posts), ("user", [7, 8], users)])
    assert first == [{1: {"id": 1}, 2: {"id": 2}}, {7: {"id": 7, "name": "ann"}}]
    assert posts.calls == [[1, 2]]
    assert users.calls == [[7, 8]]
    again = await cache.get_groups([("post", [2], posts), ("user", [7], users)])
    assert again == [{2: {"id": 2}}, {7: {"id": 7, "name": "ann"}}]
    assert len(posts.calls) == 1  # both from the one MGET
    assert len(users.calls) == 1
    await cache.evict([("user", 7)])
    assert (await cache.get_groups([("user", [7], Loader({7: {"id": 7, "name": "bo"}}))])) == [
        {7: {"id": 7, "name": "bo"}}
    ]
