"""The in-process row cache (``TIDINGS_ROW_CACHE=memory``): the Redis cache's contract —
batched loads, one load per cold key, tombstones, a TTL — plus its bound on rows."""

from __future__ import annotations

import asyncio

from tests.support.rowcache import (
    FactLoader,
    Loader,
    check_linked,
    check_misses_load_once_then_hit,
)
from tidings.core.cache import TTL_JITTER, MemoryRowCache, Row


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _cache(clock: Clock | None = None, max_entries: int = 1000) -> MemoryRowCache:
    return MemoryRowCache(ttl_seconds=60, max_entries=max_entries, clock=clock or Clock())


async def test_misses_are_loaded_in_one_call_then_served_from_memory() -> None:
    cache = _cache()
    await check_misses_load_once_then_hit(cache)


async def test_linked_rows_are_read_with_the_rows_they_name() -> None:
    await check_linked(_cache())


async def test_a_caller_cannot_change_a_cached_row_through_what_it_was_given() -> None:
    cache = _cache()
    load = Loader({1: {"id": 1, "links": ["a"]}})
    row = (await cache.get_many("post", [1], load))[1]
    row["links"].append("b")
    cached = (await cache.get_many("post", [1], load))[1]
    cached["links"].append("c")
    assert (await cache.get_many("post", [1], load))[1] == {"id": 1, "links": ["a"]}
    assert len(load.calls) == 1


async def test_a_cold_hot_key_is_loaded_once_by_concurrent_readers() -> None:
    cache = _cache()
    load = Loader({7: {"id": 7}}, delay=0.02)
    results = await asyncio.gather(*(cache.get_many("post", [7], load) for _ in range(20)))
    assert all(result == {7: {"id": 7}} for result in results)
    assert load.calls == [[7]]  # one reader loaded it; the others waited for the fill


async def test_readers_load_themselves_when_the_first_load_fails() -> None:
    cache = _cache()

    async def broken(ids: list[int]) -> dict[int, Row]:
        await asyncio.sleep(0.01)
        raise RuntimeError("database gone")

    good = Loader({7: {"id": 7}})
    first = asyncio.create_task(cache.get_many("post", [7], broken))
    await asyncio.sleep(0)
    second = await cache.get_many("post", [7], good)
    assert second == {7: {"id": 7}}
    assert good.calls == [[7]]
    try:
        await first
    except RuntimeError:
        pass
    else:  # pragma: no cover - the failing load must surface to its own caller
        raise AssertionError("the failing load was swallowed")


async def test_an_evicted_row_is_not_refilled_with_a_version_read_before_the_write() -> None:
    clock = Clock()
    cache = _cache(clock)
    old = Loader({5: {"id": 5, "text": "old"}})
    await cache.get_many("post", [5], old)
    await cache.evict([("post", 5)])  # the writer committed
    # a reader that loaded the row before the commit tries to fill: the tombstone wins
    assert await cache.get_many("post", [5], old) == {5: {"id": 5, "text": "old"}}
    new = Loader({5: {"id": 5, "text": "new"}})
    assert await cache.get_many("post", [5], new) == {5: {"id": 5, "text": "new"}}
    assert new.calls == [[5]]  # tombstoned: read from the database, not from the cache
    clock.now += 6  # the tombstone (5 s) is gone: the next read fills again
    assert await cache.get_many("post", [5], new) == {5: {"id": 5, "text": "new"}}
    assert await cache.get_many("post", [5], new) == {5: {"id": 5, "text": "new"}}
    assert new.calls == [[5], [5]]


async def test_rows_expire_after_the_ttl() -> None:
    clock = Clock()
    cache = _cache(clock)
    load = Loader({1: {"id": 1}})
    await cache.get_many("post", [1], load)
    clock.now += 60 * (1 - TTL_JITTER) - 1  # the shortest a row lives
    await cache.get_many("post", [1], load)
    assert len(load.calls) == 1
    clock.now += 60 * TTL_JITTER + 2  # past the TTL
    await cache.get_many("post", [1], load)
    assert len(load.calls) == 2


async def test_rows_filled_together_do_not_expire_together() -> None:
    clock = Clock()
    cache = _cache(clock)
    await cache.get_many("post", range(200), Loader({i: {"id": i} for i in range(200)}))
    lifetimes = sorted(expires - clock.now for expires, _row in cache._entries.values())
    assert lifetimes[0] >= 60 * (1 - TTL_JITTER)
    assert lifetimes[-1] <= 60
    assert lifetimes[-1] - lifetimes[0] > 60 * TTL_JITTER / 2  # spread, not one instant


async def test_the_least_recently_used_rows_go_first_beyond_the_bound() -> None:
    cache = _cache(max_entries=100)
    load = Loader({i: {"id": i} for i in range(1, 201)})
    await cache.get_many("post", range(1, 101), load)
    await cache.get_many("post", [1], load)  # 1 is used again: 2 is now the oldest
    await cache.get_many("post", [150], load)
    assert len(cache) == 100
    load.calls.clear()
    await cache.get_many("post", [1, 2, 3], load)
    assert load.calls == [[2]]  # 2 was dropped; 1 (recently used) and 3 were kept


async def test_several_kinds_are_read_together_and_misses_loaded_per_kind() -> None:
    cache = _cache()
    posts = Loader({1: {"id": 1}, 2: {"id": 2}})
    users = Loader({7: {"id": 7, "name": "ann"}})
    first = await cache.get_groups([("post", [1, 2], posts), ("user", [7, 8], users)])
    assert first == [{1: {"id": 1}, 2: {"id": 2}}, {7: {"id": 7, "name": "ann"}}]
    assert (posts.calls, users.calls) == ([[1, 2]], [[7, 8]])
    again = await cache.get_groups([("post", [2], posts), ("user", [7], users)])
    assert again == [{2: {"id": 2}}, {7: {"id": 7, "name": "ann"}}]
    assert (len(posts.calls), len(users.calls)) == (1, 1)
    await cache.evict([("user", 7)])
    fresh = Loader({7: {"id": 7, "name": "bo"}})
    assert await cache.get_groups([("user", [7], fresh)]) == [{7: {"id": 7, "name": "bo"}}]


async def test_the_bound_never_drops_a_live_tombstone() -> None:
    """A reader that loaded a row before a write must not put it back, however many rows
    arrive while the tombstone lives."""
    cache = _cache(max_entries=100)
    old = Loader({1: {"id": 1, "v": "old"}})
    await cache.get_many("post", [1], old)
    await cache.evict([("post", 1)])
    await cache.get_many("post", range(2, 400), Loader({i: {"id": i} for i in range(2, 400)}))
    await cache.get_many("post", [1], old)  # the stale version tries to fill
    new = Loader({1: {"id": 1, "v": "new"}})
    assert await cache.get_many("post", [1], new) == {1: {"id": 1, "v": "new"}}
    assert new.calls == [[1]]


async def test_facts_are_loaded_once_then_served_from_memory_until_the_ttl() -> None:
    clock = Clock()
    cache = _cache(clock)
    load = FactLoader({"a1": 3})
    assert await cache.get_facts("facts.rel", 7, ["a1", "a2"], load) == {"a1": 3, "a2": 0}
    assert await cache.get_facts("facts.rel", 7, ["a2", "p9"], load) == {"a2": 0, "p9": 0}
    assert load.calls == [["a1", "a2"], ["p9"]]
    clock.now += 61  # the generation expired: loaded again
    assert await cache.get_facts("facts.rel", 7, ["a1"], load) == {"a1": 3}
    assert load.calls[-1] == ["a1"]


async def test_an_eviction_ends_the_facts_and_no_load_from_before_it_fills() -> None:
    clock = Clock()
    cache = _cache(clock)
    old = FactLoader({"a1": 1})
    await cache.get_facts("facts.rel", 5, ["a1"], old)
    await cache.evict([("facts.rel", 5)])  # a write committed: a1 is now 0
    # a reader whose snapshot predates the commit: its answer is not kept
    assert await cache.get_facts("facts.rel", 5, ["a1"], old) == {"a1": 1}
    new = FactLoader({})
    assert await cache.get_facts("facts.rel", 5, ["a1"], new) == {"a1": 0}
    clock.now += 6  # the tombstone is gone: a new generation, filled
    assert await cache.get_facts("facts.rel", 5, ["a1"], new) == {"a1": 0}
    assert await cache.get_facts("facts.rel", 5, ["a1"], new) == {"a1": 0}
    assert len(new.calls) == 2


async def test_a_load_that_an_eviction_overtakes_fills_nothing() -> None:
    clock = Clock()
    cache = _cache(clock)

    async def racing(names: list[str]) -> dict[str, int]:
        await cache.evict([("facts.rel", 6)])  # a write commits while this reader loads
        return {"a1": 1}

    assert await cache.get_facts("facts.rel", 6, ["a1"], racing) == {"a1": 1}
    clock.now += 6  # past the tombstone: a new generation, without the racing answer
    after = FactLoader({})
    assert await cache.get_facts("facts.rel", 6, ["a1"], after) == {"a1": 0}
    assert await cache.get_facts("facts.rel", 6, ["a1"], after) == {"a1": 0}
    assert after.calls == [["a1"]]


async def test_the_facts_of_the_least_recently_asked_owners_go_beyond_the_bound() -> None:
    cache = _cache(max_entries=2)
    load = FactLoader({"a1": 1})
    for owner in (1, 2, 3):
        await cache.get_facts("facts.rel", owner, ["a1"], load)
    await cache.get_facts("facts.rel", 3, ["a1"], load)  # kept
    await cache.get_facts("facts.rel", 1, ["a1"], load)  # dropped: loaded again
    assert len(load.calls) == 4
