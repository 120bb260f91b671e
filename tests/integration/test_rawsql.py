"""Hot statements on the driver (tidings.core.rawsql) answer exactly what the session answers:
``IN`` and ``NOT IN`` lists of any length (none included), booleans, times and NULLs, inside
the session's transaction — on asyncpg and on aiosqlite."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import BigInteger, Integer, bindparam, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from tidings.accounts.models import User
from tidings.core import rawsql
from tidings.core.container import Container
from tidings.core.db import Database

IDS = bindparam("ids", type_=BigInteger, expanding=True)
NOT_IDS = bindparam("not_ids", type_=BigInteger, expanding=True)
STATEMENT = (
    select(User.id, User.suspended, User.created_at, User.avatar_url, User.follower_count)
    .where(User.id.in_(IDS), User.id.not_in(NOT_IDS))
    .where(User.follower_count >= bindparam("min", type_=Integer))
    .order_by(User.id)
)
START = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)


async def _same(session: AsyncSession, params: dict[str, Any]) -> list[tuple[Any, ...]]:
    expected = [tuple(row) for row in (await session.execute(STATEMENT, params)).all()]
    got = [tuple(row) for row in await rawsql.fetch(session, STATEMENT, params)]
    assert got == expected, params
    return got


async def test_the_driver_path_answers_what_the_session_answers(container: Container) -> None:
    rows = [
        {
            "id": 100 + i,
            "username": f"r{i}",
            "username_key": f"r{i}",
            "email": f"r{i}@x.test",
            "suspended": i % 2 == 1,
            "created_at": START + timedelta(days=i),
            "avatar_url": None if i % 3 else f"https://example.com/{i}.png",
            "follower_count": i,
        }
        for i in range(6)
    ]
    async with container.db.unit_of_work() as session:
        await session.execute(insert(User), rows)
        # inside the same (uncommitted) transaction: the driver sees the session's writes
        got = await _same(session, {"ids": [100, 101, 102, 105, 999], "not_ids": [102], "min": 0})
        assert [row[0] for row in got] == [100, 101, 105]
    async with container.db.unit_of_work(write=False) as session:
        for ids, not_ids in ([[], [101]], [[100, 101, 102, 103, 104, 105], []], [[103], [103]]):
            await _same(session, {"ids": ids, "not_ids": not_ids, "min": 0})
        got = await _same(session, {"ids": list(range(100, 106)), "not_ids": [], "min": 4})
    assert got == [
        (104, False, START + timedelta(days=4), None, 4),
        (105, True, START + timedelta(days=5), None, 5),
    ]
    assert all(type(row[1]) is bool for row in got)  # not SQLite's 0 and 1
    assert all(isinstance(row[2], datetime) and row[2].tzinfo is not None for row in got)


async def test_pending_objects_are_flushed_first_and_sets_are_lists(
    container: Container,
) -> None:
    """Like ``session.execute``: an object added but not flushed is seen; any iterable works
    as an ``IN`` list."""
    async with container.db.unit_of_work() as session:
        session.add(User(id=700, username="p", username_key="p", email="p@x.test"))
        params = {"ids": {700, 701}, "not_ids": (), "min": 0}
        assert [row[0] for row in await rawsql.fetch(session, STATEMENT, params)] == [700]


async def test_the_driver_connection_follows_the_sessions_transaction(
    container: Container,
) -> None:
    """The driver connection is looked up once per transaction: within one it is the same,
    and after a commit the next statement runs on the new transaction's connection (never on
    the one handed back to the pool, which another session may hold by then)."""
    statement = select(User.id).where(User.id.in_(IDS))

    async def current(session: AsyncSession) -> Any:
        return (await (await session.connection()).get_raw_connection()).driver_connection

    def remembered(session: AsyncSession) -> Any:
        return session.info[rawsql._DRIVER][0]

    async with container.db.unit_of_work(write=False) as session:
        await rawsql.fetch(session, statement, {"ids": [1]})
        first = await rawsql._driver_connection(session)
        assert first is await current(session)
        assert await rawsql._driver_connection(session) is first
        assert remembered(session) is session.sync_session.get_transaction()
        await session.commit()
        async with container.db.unit_of_work(write=False) as other:  # holds a connection meanwhile
            await rawsql.fetch(other, statement, {"ids": [1]})
            assert await rawsql._driver_connection(other) is await current(other)
            assert await rawsql.fetch(session, statement, {"ids": [1]}) == []
            assert remembered(session) is session.sync_session.get_transaction()
            assert await rawsql._driver_connection(session) is await current(session)
            assert await current(session) is not await current(other)


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
async def test_generic_plans_last_one_checkout_and_never_start_in_a_transaction(
    container: Container,
) -> None:
    """``generic=True`` puts the connection on generic plans (a plan made once, no planning
    per execution) outside transactions only, a plain statement puts it back, and the next
    checkout always hands it out on custom plans (what the pull feed needs)."""
    db = Database(container.settings.effective_database_url, pool_size=1)  # one connection
    params = {"ids": [1], "not_ids": [], "min": 0}

    async def plans(session: AsyncSession) -> str:
        driver = (await (await session.connection()).get_raw_connection()).driver_connection
        return str(await driver.fetchval("SHOW plan_cache_mode"))

    try:
        async with db.unit_of_work(write=False) as session:
            assert await plans(session) == "force_custom_plan"
            await rawsql.fetch(session, STATEMENT, params, generic=True)
            assert await plans(session) == "force_generic_plan"
            await rawsql.fetch(session, STATEMENT, params)
            assert await plans(session) == "force_custom_plan"
            await rawsql.fetch(session, STATEMENT, params, generic=True)
            assert await plans(session) == "force_generic_plan"
        async with db.unit_of_work(write=False) as session:  # the same connection, reset
            assert await plans(session) == "force_custom_plan"
        async with db.unit_of_work(write=True) as session:
            await session.execute(select(1))  # the transaction has begun
            await rawsql.fetch(session, STATEMENT, params, generic=True)
            assert await plans(session) == "force_custom_plan"
    finally:
        await db.dispose()
