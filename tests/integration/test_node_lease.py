"""Node ids leased per process (tidings.core.nodes) on SQLite and PostgreSQL: processes get
different ones, even started together; a lease is renewed, given back, expires, and a process
whose lease was taken takes another one; generated ids carry the leased node."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx2
import pytest
from sqlalchemy import func, select, update

from tests.support.api import assert_problem, sign_up
from tidings.core import ids
from tidings.core.container import Container
from tidings.core.db import Database, utcnow
from tidings.core.errors import ConfigurationError
from tidings.core.nodes import LEASE, IdNode, NodeLease
from tidings.events import domain
from tidings.events.consumers import ConsumerRegistry
from tidings.events.delivery import RetryPolicy, deliver
from tidings.events.models import DeadLetter, OutboxMessage
from tidings.events.outbox import record


def _node_of(snowflake: int) -> int:
    return (snowflake >> ids.SEQUENCE_BITS) & ids.MAX_NODE


async def _row(container: Container, node_id: int) -> IdNode:
    async with container.db.unit_of_work(write=False) as session:
        row = await session.get(IdNode, node_id)
        assert row is not None
        return row


async def test_leases_are_distinct_and_ids_carry_the_leased_node(container: Container) -> None:
    leases = [NodeLease(container.db, holder=f"p{n}") for n in range(12)]
    # started together: on PostgreSQL SKIP LOCKED hands each its own row
    taken = await asyncio.gather(*(lease.acquire() for lease in leases))
    assert len(set(taken)) == len(taken)
    last = NodeLease(container.db, holder="last")
    assert await last.acquire() not in taken
    assert _node_of(ids.new_id()) == last.node_id  # the process's ids use its lease
    row = await _row(container, taken[0])
    assert row.holder == "p0"
    assert row.leased_until > utcnow() + LEASE - timedelta(minutes=1)


async def test_renew_release_and_a_lost_lease(container: Container) -> None:
    first = NodeLease(container.db, holder="first")
    node = await first.acquire()
    assert await first.renew()

    # the lease ran out (the process could not renew), and another process took the node
    async with container.db.unit_of_work() as session:
        await session.execute(
            update(IdNode)
            .where(IdNode.node_id == node)
            .values(leased_until=utcnow() - timedelta(days=365 * 60))
        )
    second = NodeLease(container.db, holder="second")
    assert await second.acquire() == node  # the one free the longest
    assert not await first.renew()

    stop = asyncio.Event()
    keeper = asyncio.create_task(first.keep(stop, every=0.05))
    try:
        for _ in range(100):  # bounded: 5 s at most
            if first.node_id != node:
                break
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await asyncio.wait_for(keeper, 5)
    assert first.node_id is not None
    assert first.node_id != node
    assert (await _row(container, first.node_id)).holder == "first"
    assert (await _row(container, node)).holder == "second"

    await second.release()
    released = await _row(container, node)
    assert released.holder is None
    assert released.leased_until <= utcnow()
    assert not await second.renew()
    # a node given back is free again, but the one free the longest goes first
    third = NodeLease(container.db, holder="third")
    assert await third.acquire() != node


async def test_all_leased_is_refused(container: Container) -> None:
    async with container.db.unit_of_work() as session:
        await session.execute(
            update(IdNode).values(holder="someone", leased_until=utcnow() + timedelta(hours=1))
        )
    with pytest.raises(ConfigurationError, match="node ids is leased"):
        await NodeLease(container.db).acquire()


async def test_a_database_down_at_start_defers_the_lease(container: Container) -> None:
    """The process starts (it cannot write anything either) and keeps trying."""
    down = Database("postgresql+asyncpg://postgres@127.0.0.1:1/none", pool_timeout=1)
    lease = NodeLease(down)
    try:
        await asyncio.wait_for(lease.start(), 20)
        assert lease.node_id is None
    finally:
        await asyncio.wait_for(lease.stop(), 20)
        await down.dispose()


async def test_the_app_leases_a_node_while_it_serves(container: Container) -> None:
    from tidings.app import create_app

    app = create_app(container.settings, container=container)
    async with app.router.lifespan_context(app):
        async with container.db.unit_of_work(write=False) as session:
            held = (
                (await session.execute(select(IdNode).where(IdNode.holder.is_not(None))))
                .scalars()
                .all()
            )
        assert len(held) == 1
        assert _node_of(ids.new_id()) == held[0].node_id
        node = held[0].node_id
    released = await _row(container, node)
    assert released.holder is None


@pytest.fixture(autouse=True)
def _random_node_after() -> Iterator[None]:
    """Every test leaves the process making ids as one without a lease."""
    yield
    ids.configure_ids(None)


def test_ids_stop_when_the_lease_is_not_confirmed() -> None:
    ids.configure_ids(5, valid_until=time.monotonic() + 60)
    assert _node_of(ids.new_id()) == 5
    ids.extend_ids(5, time.monotonic() - 1)  # not renewed in time
    with pytest.raises(ids.IdsUnavailable):
        ids.new_id()
    ids.extend_ids(6, time.monotonic() + 60)  # another node's renewal changes nothing
    with pytest.raises(ids.IdsUnavailable):
        ids.new_id()
    ids.refuse_ids()
    with pytest.raises(ids.IdsUnavailable):
        ids.new_id()


async def test_a_request_that_needs_an_id_then_answers_503(
    client: httpx2.AsyncClient, container: Container
) -> None:
    author = await sign_up(client, "author")
    ids.refuse_ids()
    refused = await client.post("/api/v1/posts", json={"text": "hello"}, headers=author.headers)
    problem = assert_problem(refused, 503)
    assert problem["type"].endswith("ids-unavailable")
    assert refused.headers["retry-after"] == "5"
    ids.configure_ids(None)
    made = await client.post("/api/v1/posts", json={"text": "hello"}, headers=author.headers)
    assert made.status_code == 201, made.text


async def test_a_consumer_that_cannot_make_ids_defers_its_event(container: Container) -> None:
    """Not retried in place nor dead-lettered: the relay publishes the event again later."""
    calls = 0

    async def handler(session: Any, env: Any, ctx: Any) -> None:
        nonlocal calls
        calls += 1
        session.add(OutboxMessage(event_type="x", aggregate_id=1, payload={}))
        ids.refuse_ids()  # the flush below makes the row's id: refused inside the statement
        await session.flush()

    registry = ConsumerRegistry()
    registry.add("needs_ids", ["user.followed"], handler)
    async with container.db.unit_of_work() as session:
        record(session, domain.UserFollowed(user_id=1, target_user_id=2))
        await session.flush()
        event_id = (await session.execute(select(func.max(OutboxMessage.id)))).scalar_one()
    policy = RetryPolicy(max_attempts=3, base_delay=0.01)
    await deliver(container.db, registry, "needs_ids", event_id, None, policy)
    ids.configure_ids(None)
    assert calls == 1
    async with container.db.unit_of_work(write=False) as session:
        assert (await session.execute(select(func.count()).select_from(DeadLetter))).scalar() == 0


async def test_a_missing_table_is_a_configuration_error(tmp_path: Path) -> None:
    blank = Database(f"sqlite+aiosqlite:///{tmp_path / 'blank.db'}")
    try:
        with pytest.raises(ConfigurationError, match="tidings migrate"):
            await NodeLease(blank).acquire()
    finally:
        await blank.dispose()
