"""Node ids leased per process (tidings.core.nodes) on SQLite and PostgreSQL: processes get
different ones, even started together; a lease is renewed, given back, expires, and a process
whose lease was taken takes another one; generated ids carry the leased node."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from tidings.core import ids
from tidings.core.container import Container
from tidings.core.db import Database, utcnow
from tidings.core.errors import ConfigurationError
from tidings.core.nodes import LEASE, IdNode, NodeLease


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
