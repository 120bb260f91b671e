"""Erasure's graph steps, batch by batch: the account's own blocks and mutes go with an event
each, others' blocks and mutes of it without; each step handles up to one batch of blocks and
one of mutes per call and says how many it took."""

from __future__ import annotations

from sqlalchemy import func, select

from tests.support.rows import make_users
from tidings.accounts import erasure
from tidings.core.container import Container
from tidings.events.models import OutboxMessage
from tidings.graph.models import Block, Mute
from tidings.graph.repository import GraphRepository


async def _count(container: Container, stmt: object) -> int:
    async with container.db.unit_of_work(write=False) as session:
        return int((await session.execute(stmt)).scalar_one())  # type: ignore[call-overload]


async def _events(container: Container, event_type: str) -> list[tuple[int, int]]:
    async with container.db.unit_of_work(write=False) as session:
        stmt = select(OutboxMessage.payload).where(OutboxMessage.event_type == event_type)
        payloads = (await session.execute(stmt)).scalars()
        return sorted((int(p["user_id"]), int(p["target_user_id"])) for p in payloads)


async def test_graph_steps_take_one_batch_of_each_edge_and_count_them(
    container: Container,
) -> None:
    alice, bob, carol, dave, erin = await make_users(
        container, "alice", "bob", "carol", "dave", "erin"
    )
    async with container.db.unit_of_work() as session:
        graph = GraphRepository(session)
        for other in (bob, carol, dave):
            await graph.add_block(alice, other)
        await graph.add_mute(alice, erin)
        for other in (bob, carol):
            await graph.add_block(other, alice)
        for other in (dave, erin, bob):
            await graph.add_mute(other, alice)
        await graph.add_block(bob, carol)  # between others: stays
        await graph.add_mute(carol, bob)

    async def step(run: erasure.Step) -> int:
        async with container.db.unit_of_work() as session:
            return await run(session, alice, 2)

    assert [await step(erasure._blocks_and_mutes) for _ in range(3)] == [3, 1, 0]
    assert [await step(erasure._blocked_and_muted_by_others) for _ in range(3)] == [4, 1, 0]

    edges = select(func.count()).select_from
    assert await _count(container, edges(Block)) == 1
    assert await _count(container, edges(Mute)) == 1
    unblocked = sorted((alice, other) for other in (bob, carol, dave))
    assert await _events(container, "user.unblocked") == unblocked
    assert await _events(container, "user.unmuted") == [(alice, erin)]
