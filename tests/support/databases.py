"""Real databases for tests: a migrated template per run, a fresh copy per test.

PostgreSQL: ``CREATE DATABASE ... TEMPLATE`` (about 0.1 s); SQLite: a file copy.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import asyncpg

from tidings.core.migrate import upgrade

T = TypeVar("T")
PG_DSN = os.environ.get("TIDINGS_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion from sync code, even inside a running event loop."""
    with ThreadPoolExecutor(max_workers=1) as executor:
        return executor.submit(asyncio.run, coro).result()


def pg_url(database: str) -> str:
    base = PG_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
    return f"{base}/{database}"


async def admin_sql(sql: str, *args: object) -> None:
    """One statement on the maintenance database (create, drop, alter databases)."""
    conn = await asyncpg.connect(PG_DSN, timeout=5)
    try:
        await conn.execute(sql, *args)
    finally:
        await conn.close()


def postgres_reachable() -> str | None:
    """None when PostgreSQL answers, else the reason it does not."""
    try:
        run_sync(admin_sql("SELECT 1"))
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


class PostgresTemplates:
    def __init__(self) -> None:
        self.template = f"tidings_tpl_{os.getpid()}_{uuid.uuid4().hex[:6]}"

    def create(self) -> None:
        run_sync(admin_sql(f'CREATE DATABASE "{self.template}"'))
        upgrade(pg_url(self.template))

    def drop(self) -> None:
        run_sync(admin_sql(f'DROP DATABASE IF EXISTS "{self.template}" WITH (FORCE)'))

    async def clone(self) -> str:
        name = f"tidings_t_{uuid.uuid4().hex[:12]}"
        await admin_sql(f'CREATE DATABASE "{name}" TEMPLATE "{self.template}"')
        return name

    @staticmethod
    async def drop_clone(name: str) -> None:
        await admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class SqliteTemplates:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.template = directory / "template.db"

    def create(self) -> None:
        upgrade(f"sqlite+aiosqlite:///{self.template}")

    def clone(self) -> str:
        target = self.directory / f"t_{uuid.uuid4().hex[:12]}.db"
        shutil.copyfile(self.template, target)
        return f"sqlite+aiosqlite:///{target}"
