"""Who hears about an actor (:func:`tidings.notifications.service.audience`): deleted accounts
on either side, blocks either way and mutes of the actor are left out, in a fixed number of
statements whatever the number of candidates."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import event

from tests.support.rows import make_users
from tidings.accounts.models import User
from tidings.core.container import Container
from tidings.core.db import utcnow
from tidings.graph.repository import GraphRepository
from tidings.notifications.repository import NotificationRepository
from tidings.notifications.service import audience


async def _delete(container: Container, *user_ids: int) -> None:
    async with container.db.unit_of_work() as session:
        for user_id in user_ids:
            user = await session.get(User, user_id)
            assert user is not None
            user.deleted_at = utcnow()


async def _audience(container: Container, actor_id: int, candidates: list[int]) -> set[int]:
    async with container.db.unit_of_work() as session:
        return await audience(session, actor_id, candidates)


async def test_the_audience_leaves_out_deleted_blocked_and_muting_people(
    container: Container,
) -> None:
    actor, fan, blocker, blocked, muter, muted, gone, fan_muter = await make_users(
        container, "actor", "fan", "blocker", "blocked", "muter", "muted", "gone", "fanmuter"
    )
    async with container.db.unit_of_work() as session:
        graph = GraphRepository(session)
        await graph.add_block(blocker, actor)  # blocks the actor
        await graph.add_block(actor, blocked)  # blocked by the actor
        await graph.add_mute(muter, actor)  # mutes the actor: left out
        await graph.add_mute(actor, muted)  # muted by the actor: still hears
        await graph.add_mute(fan_muter, fan)  # a mute of someone else: no matter
        await graph.add_block(fan, muted)  # a block of someone else: no matter
    await _delete(container, gone)
    candidates = [actor, fan, blocker, blocked, muter, muted, gone, fan_muter, 0]

    assert await _audience(container, actor, candidates) == {fan, muted, fan_muter}
    assert await _audience(container, actor, [actor, 0]) == set()
    assert await _audience(container, actor, [gone, blocker]) == set()

    await _delete(container, actor)  # a deleted actor: nobody hears
    assert await _audience(container, actor, candidates) == set()


async def test_shut_out_tells_the_deleted_actor_and_the_deleted_or_blocked_candidates(
    container: Container,
) -> None:
    actor, fan, blocker, blocked, gone, stranger = await make_users(
        container, "actor", "fan", "blocker", "blocked", "gone", "stranger"
    )
    async with container.db.unit_of_work() as session:
        graph = GraphRepository(session)
        await graph.add_block(blocker, actor)
        await graph.add_block(actor, blocked)
        await graph.add_block(gone, actor)  # deleted and blocking: listed once
        await graph.add_block(stranger, fan)
    await _delete(container, gone)
    async with container.db.unit_of_work(write=False) as session:
        repo = NotificationRepository(session)
        everyone = [fan, blocker, blocked, gone, stranger]
        assert await repo.shut_out(actor, everyone) == (False, {blocker, blocked, gone})
        assert await repo.shut_out(actor, [actor, fan]) == (False, set())
        assert await repo.shut_out(actor, []) == (False, set())
        assert await repo.shut_out(gone, [fan]) == (True, set())
        assert await repo.shut_out(gone, [actor, fan]) == (True, {actor})  # gone blocks actor
        assert await repo.shut_out(fan, everyone) == (False, {gone, stranger})


async def test_the_audience_costs_the_same_statements_whatever_the_candidates(
    container: Container,
) -> None:
    """The pair locks (PostgreSQL), one statement for deleted accounts and blocks, one for
    mutes: three (two on SQLite), for one candidate or many."""
    actor, *others = await make_users(container, "actor", "a", "b", "c", "d", "e")
    async with container.db.unit_of_work() as session:
        await GraphRepository(session).add_block(others[0], actor)
        await GraphRepository(session).add_mute(others[1], actor)
    await _delete(container, others[2])
    postgres = container.db.engine.dialect.name == "postgresql"
    statements: list[str] = []
    counting = asyncio.current_task()

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if asyncio.current_task() is counting and not statement.startswith("BEGIN"):
            statements.append(statement)

    async def statements_for(candidates: list[int]) -> int:
        async with container.db.unit_of_work() as session:
            await session.connection()  # the transaction's own statements: not counted
            statements.clear()
            event.listen(container.db.engine.sync_engine, "before_cursor_execute", count)
            try:
                await audience(session, actor, candidates)
            finally:
                event.remove(container.db.engine.sync_engine, "before_cursor_execute", count)
        return len(statements)

    expected = 3 if postgres else 2
    assert await statements_for(others[3:4]) == expected, statements
    assert await statements_for(others) == expected, statements
