"""Facts in the row cache (one Redis hash per owner with a generation), on real Redis: filled
field by field, closed by a write so that nothing read before it is put back, any size.
And a writer's own transaction reads the relations it changed, without filling the cache."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio import Redis
from sqlalchemy import insert, select

from tests.conftest import make_settings
from tests.support.rowcache import FactLoader, Loader, drop_keys
from tidings.accounts.models import User
from tidings.auth.policy import Principal, Role
from tidings.core.cache import (
    EVICT_KEY,
    PREFETCHED,
    TOMBSTONE,
    RowCache,
    cache_of,
    record_eviction,
)
from tidings.core.container import Container
from tidings.core.ids import new_id
from tidings.events.consumers import RetryLater
from tidings.events.delivery import RetryPolicy, apply_once, deliver
from tidings.events.models import DeadLetter, OutboxMessage, ProcessedEvent
from tidings.events.registry import build_registry
from tidings.graph import consumers as graph_consumers
from tidings.graph import service as graph_service
from tidings.graph.repository import GraphRepository
from tidings.posts.facts import RELATIONS
from tidings.posts.models import Post
from tidings.posts.relations import relations_of
from tidings.posts.repository import PostRepository

REDIS_URL = "redis://127.0.0.1:6379/0"
KIND = "facts.test"


@pytest.fixture
async def cache() -> AsyncIterator[RowCache]:
    redis = Redis.from_url(REDIS_URL, decode_responses=True)
    prefix = f"test:facts:{secrets.token_hex(6)}:"
    yield RowCache(redis, prefix=prefix, ttl_seconds=60, tombstone_ms=300)
    await drop_keys(redis, prefix)
    await redis.aclose()


async def test_facts_are_loaded_once_then_read_from_the_hash(cache: RowCache) -> None:
    load = FactLoader({"a1": 3})
    assert await cache.get_facts(KIND, 7, ["a1", "a2"], load) == {"a1": 3, "a2": 0}
    assert await cache.get_facts(KIND, 7, ["a1", "a2", "p9"], load) == {"a1": 3, "a2": 0, "p9": 0}
    assert load.calls == [["a1", "a2"], ["p9"]]  # the first two were filled, zero included
    assert 0 < await cache.redis.pttl(cache.key(KIND, 7)) <= 60_000


async def test_thousands_of_facts_fill_in_one_call(cache: RowCache) -> None:
    names = [f"p{i}" for i in range(12_000)]  # more arguments than Lua's unpack takes
    load = FactLoader({name: 1 for name in names[::2]})
    first = await cache.get_facts(KIND, 8, names, load)
    assert await cache.get_facts(KIND, 8, names, load) == first
    assert len(load.calls) == 1  # all filled by the first read
    assert sum(first.values()) == 6_000
    assert cache.available


async def test_a_write_closes_the_hash_so_nothing_read_before_it_comes_back(
    cache: RowCache,
) -> None:
    before = FactLoader({"a1": 1})
    assert await cache.get_facts(KIND, 9, ["a1"], before) == {"a1": 1}
    await cache.evict([(KIND, 9)])  # the writer committed (a1 is now 0)
    assert await cache.redis.hget(cache.key(KIND, 9), "g") == TOMBSTONE
    # a reader whose snapshot predates the commit (SQLite) still loads the old answer: it is
    # served to that reader only, never filled
    assert await cache.get_facts(KIND, 9, ["a1"], before) == {"a1": 1}
    after = FactLoader({})
    assert await cache.get_facts(KIND, 9, ["a1"], after) == {"a1": 0}
    assert after.calls == [["a1"]]  # read from the database while the hash is closed
    await cache.redis.delete(cache.key(KIND, 9))  # as when the tombstone expires
    assert await cache.get_facts(KIND, 9, ["a1"], after) == {"a1": 0}
    assert await cache.get_facts(KIND, 9, ["a1"], after) == {"a1": 0}
    assert len(after.calls) == 2  # a new generation: loaded once more, then cached


async def test_a_fill_from_an_ended_generation_is_dropped(cache: RowCache) -> None:
    key = cache.key(KIND, 10)
    fresh = FactLoader({})

    async def racing_load(names: list[str]) -> dict[str, int]:
        await cache.evict([(KIND, 10)])  # a write commits while this reader loads
        await cache.redis.delete(key)  # ... and its tombstone has expired
        # another reader starts the next generation and fills the new answer
        assert await cache.get_facts(KIND, 10, ["a1"], fresh) == {"a1": 0}
        return {"a1": 1}

    assert await cache.get_facts(KIND, 10, ["a1"], racing_load) == {"a1": 1}
    assert await cache.redis.hget(key, "a1") == "0"  # the stale answer did not land
    assert await cache.get_facts(KIND, 10, ["a1"], fresh) == {"a1": 0}
    assert fresh.calls == [["a1"]]


def test_an_eviction_drops_what_the_unit_of_work_read_ahead() -> None:
    info: dict[str, object] = {PREFETCHED: {"post": {1: "row 1", 2: "row 2"}, "profile.v2": {}}}
    record_eviction(info, "post", [1])
    assert info[PREFETCHED] == {"post": {2: "row 2"}, "profile.v2": {}}


@pytest.fixture
async def container(tmp_path: Path, database_url: str) -> AsyncIterator[Container]:
    prefix = f"test:facts:{secrets.token_hex(6)}:"
    settings = make_settings(
        tmp_path / "data", database_url, row_cache="redis", cache_key_prefix=prefix
    )
    built = Container.build(settings)
    yield built
    redis = Redis.from_url(settings.redis_url)
    await drop_keys(redis, prefix)
    await redis.aclose()
    await built.close()


async def test_a_writer_reads_its_own_relations_and_fills_nothing_uncommitted(
    container: Container,
) -> None:
    viewer, author, post_id = new_id(), new_id(), new_id()
    async with container.db.unit_of_work() as session:
        await session.execute(
            insert(User),
            [
                {"id": uid, "username": f"u{uid}", "username_key": f"u{uid}", "email": f"{uid}@x.t"}
                for uid in (viewer, author)
            ],
        )
        await session.execute(insert(Post), [{"id": post_id, "author_id": author, "text": "hi"}])
        cache = cache_of(session)
    assert cache is not None
    key = cache.key(RELATIONS, viewer)

    async def like_then_roll_back() -> None:
        async with container.db.unit_of_work() as session:
            assert (await relations_of(session, viewer, [author], [post_id])).liked == set()
            await PostRepository(session).add_like(post_id, viewer)
            found = await relations_of(session, viewer, [author], [post_id, post_id + 1])
            assert found.liked == {post_id}  # its own write, not the cache's old answer
            raise RuntimeError("roll back")

    with pytest.raises(RuntimeError, match="roll back"):
        await like_then_roll_back()
    assert await cache.redis.hget(key, f"p{post_id + 1}") is None  # nothing uncommitted filled
    async with container.db.unit_of_work() as session:
        assert (await relations_of(session, viewer, [author], [post_id])).liked == set()


async def test_evictions_redis_did_not_take_are_sent_before_the_next_read(
    cache: RowCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An outage between a commit and its eviction (Redis unreachable for the pipeline) does
    not leave the old row and the old facts to their TTL in this process: they are evicted
    before its next read of the cache."""
    from redis.exceptions import ConnectionError as RedisConnectionError

    old_row = Loader({5: {"id": 5, "text": "old"}})
    await cache.get_many("post", [5], old_row)
    await cache.get_facts(KIND, 11, ["a1"], FactLoader({"a1": 1}))
    working = cache.redis.pipeline

    def unreachable(*_args: object, **_kwargs: object) -> object:
        raise RedisConnectionError("Redis is unreachable")

    monkeypatch.setattr(cache.redis, "pipeline", unreachable)
    await cache.evict([("post", 5), (KIND, 11)])  # the writer committed; Redis missed it
    assert not cache.available
    monkeypatch.setattr(cache.redis, "pipeline", working)
    cache.outage.reset()  # the outage's pause is over
    new_row = Loader({5: {"id": 5, "text": "new"}})
    assert await cache.get_many("post", [5], new_row) == {5: {"id": 5, "text": "new"}}
    assert await cache.get_facts(KIND, 11, ["a1"], FactLoader({})) == {"a1": 0}
    assert await cache.redis.get(cache.key("post", 5)) == TOMBSTONE


@pytest.mark.parametrize(
    ("method", "closed"),
    [
        ("add_block", "both"),  # the blocked user's facts say "blocked by" (a timeline's 404)
        ("remove_block", "both"),
        ("add_follow", "first"),  # the facts hold the viewer's side only (no "followed by")
        ("remove_follow", "first"),
        ("add_mute", "first"),
        ("remove_mute", "first"),
    ],
)
async def test_each_graph_write_closes_the_facts_it_changes(
    container: Container, method: str, closed: str
) -> None:
    first, second = new_id(), new_id()
    async with container.db.unit_of_work() as session:
        await session.execute(
            insert(User),
            [
                {"id": uid, "username": f"g{uid}", "username_key": f"g{uid}", "email": f"{uid}@x"}
                for uid in (first, second)
            ],
        )
    async with container.db.unit_of_work() as session:
        await getattr(GraphRepository(session), method)(first, second)
        evicted = {row_id for kind, row_id in session.info.get(EVICT_KEY, ()) if kind == RELATIONS}
    assert evicted == ({first, second} if closed == "both" else {first})


@pytest.mark.parametrize("expired", [False, True])
async def test_a_block_whose_eviction_was_lost_is_closed_by_its_event(
    container: Container, monkeypatch: pytest.MonkeyPatch, expired: bool
) -> None:
    """Redis misses the blocker's eviction and the process stops before sending it again: the
    blocked user's cached facts still say "not blocked". The block's event closes them; while
    Redis still fails, its delivery is deferred (no dead letter, nothing marked done), unless
    the event is older than the facts' TTL."""
    from redis.exceptions import ConnectionError as RedisConnectionError

    blocker, blocked = new_id(), new_id()
    async with container.db.unit_of_work() as session:
        await session.execute(
            insert(User),
            [
                {"id": uid, "username": f"b{uid}", "username_key": f"b{uid}", "email": f"{uid}@x"}
                for uid in (blocker, blocked)
            ],
        )

    async def blocked_by() -> set[int]:
        async with container.db.unit_of_work() as session:
            return (await relations_of(session, blocked, [blocker], ())).blocked_by

    assert await blocked_by() == set()  # filled: not blocked
    async with container.db.unit_of_work() as session:
        cache = cache_of(session)
    assert cache is not None
    working = cache._send

    async def unreachable(_keys: object) -> None:
        raise RedisConnectionError("Redis is unreachable")

    monkeypatch.setattr(cache, "_send", unreachable)
    me = Principal(user_id=blocker, username=f"b{blocker}", role=Role.USER, session_id=1)
    async with container.db.unit_of_work(write=True) as session:
        await graph_service.block(session, me, f"b{blocked}")
    cache._unsent.clear()  # the process stopped before sending it again
    cache.outage.reset()
    async with container.db.unit_of_work() as session:
        event_id = await session.scalar(
            select(OutboxMessage.id).where(
                OutboxMessage.event_type == "user.blocked", OutboxMessage.aggregate_id == blocked
            )
        )
    assert event_id is not None
    registry = build_registry()
    consumer = graph_consumers.CONSUMER
    if expired:  # older than the facts' TTL: what it would close is gone anyway
        monkeypatch.setattr(cache, "ttl_ms", 0)
        assert await apply_once(container.db, registry, consumer, event_id, None)
        return
    with pytest.raises(RetryLater):  # Redis still fails: deferred, not failed
        await apply_once(container.db, registry, consumer, event_id, None)
    await deliver(container.db, registry, consumer, event_id, None, RetryPolicy(2, 0.01))
    async with container.db.unit_of_work() as session:  # neither applied nor dead-lettered
        for model in (ProcessedEvent, DeadLetter):
            found = select(model).where(model.event_id == event_id, model.consumer == consumer)
            assert await session.scalar(found) is None
    monkeypatch.setattr(cache, "_send", working)
    cache.outage.reset()
    assert await blocked_by() == set()  # the stale answer the lost eviction left
    assert await apply_once(container.db, registry, consumer, event_id, None)
    assert await blocked_by() == {blocker}


async def test_the_relations_consumer_runs_only_with_a_shared_row_cache(
    container: Container, tmp_path: Path, database_url: str
) -> None:
    assert container.build_events().registry.get(graph_consumers.CONSUMER) is not None
    settings = make_settings(tmp_path / "memory", database_url, row_cache="memory")
    in_memory = Container.build(settings)
    try:  # its evictions cannot be lost: a delivery per graph event would apply nothing
        assert in_memory.build_events().registry.get(graph_consumers.CONSUMER) is None
    finally:
        await in_memory.close()
