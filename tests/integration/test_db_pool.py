"""The PostgreSQL pool keeps its connections: bursts of concurrent units of work beyond the
pool's size wait for a connection rather than opening (and closing again) extra ones, each a
PostgreSQL backend forked and torn down."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text

from tests.support.databases import PostgresTemplates, pg_url
from tidings.core.db import Database

pytestmark = pytest.mark.postgres

POOL = 3
CONCURRENT = 8
BURSTS = 4


async def test_bursts_past_the_pool_reuse_its_connections(
    postgres_templates: PostgresTemplates,
) -> None:
    name = await postgres_templates.clone()
    db = Database(pg_url(name), pool_size=POOL)
    backends: set[int] = set()
    inside = 0
    most = 0

    async def unit() -> None:
        nonlocal inside, most
        async with db.unit_of_work(write=False) as session:
            pid = (await session.execute(text("SELECT pg_backend_pid()"))).scalar_one()
            inside += 1
            most = max(most, inside)
            backends.add(int(pid))
            await asyncio.sleep(0.02)  # hold the connection while the others ask for one
            inside -= 1

    try:
        for _ in range(BURSTS):
            await asyncio.wait_for(asyncio.gather(*(unit() for _ in range(CONCURRENT))), 30)
    finally:
        await db.dispose()
        await postgres_templates.drop_clone(name)
    assert most == POOL  # the pool was full: the rest waited
    assert len(backends) == POOL  # and no burst opened a connection of its own
