"""The PostgreSQL pool keeps its connections: bursts of concurrent units of work beyond the
pool's size wait for a connection rather than opening (and closing again) extra ones, each a
PostgreSQL backend forked and torn down."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx2
import pytest
from sqlalchemy import text

from tests.conftest import make_settings
from tests.support.api import assert_problem, sign_up
from tests.support.databases import PostgresTemplates, admin_sql, pg_url
from tidings.app import create_app
from tidings.core.container import Container
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


async def test_dead_pooled_connections_are_replaced_at_checkout(
    postgres_templates: PostgresTemplates,
) -> None:
    """Every pooled connection dies between two units of work (as in a restart of the
    server): the checkout's ping finds out, and the pool opens fresh ones, so no unit of work
    sees a dead connection. The ping is one statement, not SQLAlchemy's three."""
    name = await postgres_templates.clone()
    db = Database(pg_url(name), pool_size=POOL)
    pings: list[str] = []

    async def unit() -> int:
        async with db.unit_of_work(write=False) as session:
            pid = (await session.execute(text("SELECT pg_backend_pid()"))).scalar_one()
            await asyncio.sleep(0.02)  # every unit holds its own connection
            return int(pid)

    async def checkout(log: bool) -> None:
        async with db.engine.connect() as connection:  # checked out, nothing executed
            raw = await connection.get_raw_connection()
            if log:
                raw.driver_connection.add_query_logger(lambda record: pings.append(record.query))
            await asyncio.sleep(0.02)

    try:
        before = set(await asyncio.gather(*(unit() for _ in range(POOL))))
        assert len(before) == POOL
        await asyncio.gather(*(checkout(log=True) for _ in range(POOL)))
        pings.clear()
        await asyncio.gather(*(checkout(log=False) for _ in range(POOL)))  # pooled, alive
        assert pings == ["SELECT 1"] * POOL
        await admin_sql(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", name
        )
        after = set(await asyncio.gather(*(unit() for _ in range(POOL))))
    finally:
        await db.dispose()
        await postgres_templates.drop_clone(name)
    assert len(after) == POOL
    assert not after & before  # all replaced


async def test_a_request_that_finds_every_connection_busy_is_a_503(
    postgres_templates: PostgresTemplates, tmp_path: Path
) -> None:
    """The pool's wait runs out: 503 problem+json with Retry-After, not a 500."""
    name = await postgres_templates.clone()
    settings = make_settings(
        tmp_path / "data", pg_url(name), db_pool_size=1, db_pool_timeout_seconds=0.3
    )
    container = Container.build(settings)
    app = create_app(settings, container)
    transport = httpx2.ASGITransport(app=app)
    try:
        async with httpx2.AsyncClient(transport=transport, base_url="http://testserver") as http:
            alice = await sign_up(http, "alice")
            async with container.db.unit_of_work(write=False) as held:
                await held.execute(text("SELECT 1"))  # the only connection, held
                response = await http.get("/api/v1/me", headers=alice.headers)
            problem = assert_problem(response, 503)
            assert problem["type"].endswith("/busy")
            assert response.headers["Retry-After"] == "1"
            assert (await http.get("/api/v1/me", headers=alice.headers)).status_code == 200
    finally:
        await container.close()
        await postgres_templates.drop_clone(name)
