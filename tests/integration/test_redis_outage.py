"""An error from a Redis that answers pauses only the user that met it: the feed store on the
same client keeps using Redis (real Redis; the shared pause for an unreachable Redis is in
tests/unit/test_redis_outage.py). And fan-out waits for an unreachable Redis."""

from __future__ import annotations

import secrets
import socket
from pathlib import Path

import pytest
from sqlalchemy import func, insert, select

from tests.conftest import make_settings
from tests.support.rowcache import Loader, drop_keys
from tidings.accounts.models import User
from tidings.core.cache import RowCache
from tidings.core.container import Container
from tidings.core.ids import new_id
from tidings.core.redispool import connect
from tidings.events import domain
from tidings.events.consumers import RetryLater
from tidings.events.delivery import RetryPolicy, apply_once, deliver
from tidings.events.models import DeadLetter, OutboxMessage, ProcessedEvent
from tidings.events.outbox import record
from tidings.events.registry import build_registry
from tidings.feeds import fanout
from tidings.feeds.store import FeedStore, store_of
from tidings.posts.models import Post

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


async def test_fan_out_waits_for_an_unreachable_redis_instead_of_dead_lettering(
    tmp_path: Path, database_url: str
) -> None:
    """A post's fan-out meets a Redis that refuses connections: the delivery is deferred
    (nothing marked, no dead letter; the relay publishes it again), not failed five times and
    dead-lettered for an admin to replay."""
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    settings = make_settings(
        tmp_path, database_url, feed_store="redis", redis_url=f"redis://127.0.0.1:{closed}/0"
    )
    container = Container.build(settings)
    try:
        author, post_id = new_id(), new_id()
        async with container.db.unit_of_work() as session:
            await session.execute(
                insert(User),
                [{"id": author, "username": "a", "username_key": "a", "email": "a@x.t"}],
            )
            await session.execute(insert(Post), [{"id": post_id, "author_id": author, "text": "x"}])
            record(session, domain.PostCreated(post_id=post_id, user_id=author))
        async with container.db.unit_of_work() as session:
            event_id = await session.scalar(select(func.max(OutboxMessage.id)))
        registry = build_registry()
        with pytest.raises(RetryLater):
            await apply_once(container.db, registry, fanout.CONSUMER, event_id, container)
        async with container.db.unit_of_work() as session:
            store = store_of(session)
        assert store is not None
        assert not store.outage.shared_available  # the next events defer without trying
        await deliver(container.db, registry, fanout.CONSUMER, event_id, container, RetryPolicy(2))
        async with container.db.unit_of_work() as session:
            for model in (ProcessedEvent, DeadLetter):
                found = select(model).where(
                    model.event_id == event_id, model.consumer == fanout.CONSUMER
                )
                assert await session.scalar(found) is None
    finally:
        await container.close()
