"""Migrations started by several processes at once on one PostgreSQL database (two `tidings
serve` started together, replicas of a deployment): one migrates, the others wait for it and
find nothing left to do."""

from __future__ import annotations

import asyncio
import sys
import time
import uuid

import asyncpg

from tests.support.databases import PG_DSN, PostgresTemplates, admin_sql, pg_url

PROCESSES = 3
SCRIPT = """
import sys, time
from tidings.core.migrate import upgrade
start = float(sys.argv[2])
time.sleep(max(0.0, start - time.time()))  # every process begins at the same moment
upgrade(sys.argv[1])
"""


async def test_concurrent_migrations_on_postgresql(postgres_templates: PostgresTemplates) -> None:
    name = f"tidings_mig_{uuid.uuid4().hex[:10]}"
    await admin_sql(f'CREATE DATABASE "{name}"')
    try:
        start = time.time() + 8  # past every interpreter's imports
        procs = [
            await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                SCRIPT,
                pg_url(name),
                str(start),
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
            )
            for _ in range(PROCESSES)
        ]
        outputs = []
        for proc in procs:
            out, _ = await asyncio.wait_for(proc.communicate(), timeout=120)
            outputs.append((proc.returncode, out.decode(errors="replace")[-1500:]))
        failed = [text for code, text in outputs if code != 0]
        assert not failed, "a concurrent migration failed:\n" + "\n---\n".join(failed)
        conn = await asyncpg.connect(PG_DSN.rsplit("/", 1)[0] + f"/{name}", timeout=5)
        try:
            versions = await conn.fetch("SELECT version_num FROM alembic_version")
            tables = await conn.fetchval(
                "SELECT count(*) FROM pg_tables "
                "WHERE schemaname = 'public' AND tablename = 'reports'"
            )
        finally:
            await conn.close()
        assert len(versions) == 1
        assert tables == 1
    finally:
        await admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
