"""Alembic environment: async engines, batch mode on SQLite, one transaction per run."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from alembic import context
from sqlalchemy import pool, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from tidings.core.migrate import ensure_sqlite_dir
from tidings.models import Base

config = context.config
target_metadata = Base.metadata


def _database_url() -> str:
    url = config.attributes.get("database_url")
    if url:
        return str(url)
    from tidings.settings import get_settings  # only when run by the alembic command itself

    return get_settings().effective_database_url


# Serialises migration runs on one PostgreSQL database: two processes started together (two
# `tidings serve`, replicas of a deployment) would otherwise both create the same tables, and
# the second would fail on a duplicate. Taken inside the run's transaction, before Alembic reads
# the current revision, so a run that waited finds the work done.
MIGRATION_LOCK_KEY = 0x7A1D_0B5E


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        compare_server_default=True,
    )
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            connection.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY}
            )
        context.run_migrations()


async def _run_online() -> None:
    url = _database_url()
    ensure_sqlite_dir(url)
    engine = create_async_engine(url, poolclass=pool.NullPool)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_configure)
    finally:
        await engine.dispose()


if context.is_offline_mode():
    context.configure(
        url=_database_url(),
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()
else:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(_run_online())
    else:  # called from async code (tests, an embedding app): use a loop of our own
        with ThreadPoolExecutor(max_workers=1) as executor:
            executor.submit(asyncio.run, _run_online()).result()
