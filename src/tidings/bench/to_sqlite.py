"""Copy a seeded benchmark database from PostgreSQL into an embedded SQLite file.

The seed generates on PostgreSQL (server-side SQL); the embedded default's feed is measured on
the same data by copying it: the SQLite file is migrated like any Tidings database, then every
seeded table is streamed over in id order, in batches, through SQLAlchemy Core (so JSON and
timestamps are stored the way the app stores them). Redis is not involved: the embedded
default serves feeds by the pull query.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import asyncpg
from sqlalchemy import Table, insert

from tidings.core.db import Base, create_engine
from tidings.core.migrate import upgrade

BATCH = 5_000
# Parents first, so foreign keys hold at every step (posts in id order: shares and quotes
# point at earlier posts).
ORDER = ("users", "auth_sessions", "follows", "posts", "post_tags", "likes", "comments")


async def copy_to_sqlite(
    source_dsn: str, target_url: str, progress: Callable[[str, int], None] | None = None
) -> dict[str, int]:
    """Rows copied per table."""
    upgrade(target_url)
    import tidings.models  # noqa: F401 - every table on Base.metadata

    engine = create_engine(target_url, pool_size=1)
    source = await asyncpg.connect(source_dsn, timeout=10)
    for kind in ("json", "jsonb"):  # decoded, so SQLAlchemy stores them the app's way
        await source.set_type_codec(
            kind, encoder=json.dumps, decoder=json.loads, schema="pg_catalog"
        )
    copied: dict[str, int] = {}
    try:
        async with engine.begin() as target:
            for name in ORDER:
                table: Table = Base.metadata.tables[name]
                columns = [column.name for column in table.columns]
                order = "id" if "id" in columns else ", ".join(columns[:2])
                query = f"SELECT {', '.join(columns)} FROM {name} ORDER BY {order}"  # noqa: S608
                count = 0
                async with source.transaction():
                    batch: list[dict[str, object]] = []
                    async for record in source.cursor(query, prefetch=BATCH):
                        batch.append(dict(record))
                        if len(batch) >= BATCH:
                            await target.execute(insert(table), batch)
                            count += len(batch)
                            batch = []
                            if progress:
                                progress(name, count)
                    if batch:
                        await target.execute(insert(table), batch)
                        count += len(batch)
                copied[name] = count
                if progress:
                    progress(name, count)
    finally:
        await source.close()
        await engine.dispose()
    return copied
