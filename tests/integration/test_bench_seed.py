"""``tidings bench seed`` on real PostgreSQL: the rows arrive by COPY with every counter exact,
the secondary indexes set aside for the load come back exactly as the migrations made them,
and a seed interrupted after setting them aside gives them back."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from tests.support.databases import PostgresTemplates, pg_url
from tidings.bench.run import asyncpg_dsn
from tidings.bench.seed import TABLES, Scale, _defer_indexes, seed_database

pytestmark = pytest.mark.postgres

TINY = Scale(users=300, posts=3_000, active=40)

INDEXES = """
SELECT indexname, indexdef FROM pg_indexes
WHERE schemaname = 'public' AND tablename = ANY($1::text[]) ORDER BY indexname
"""
CONSTRAINTS = """
SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint
WHERE conrelid::regclass::text = ANY($1::text[]) ORDER BY conname
"""

DRIFT = {
    "follower_count": "SELECT count(*) FROM users u WHERE follower_count <> "
    "(SELECT count(*) FROM follows f WHERE f.followee_id = u.id)",
    "following_count": "SELECT count(*) FROM users u WHERE following_count <> "
    "(SELECT count(*) FROM follows f WHERE f.follower_id = u.id)",
    "post_count": "SELECT count(*) FROM users u WHERE post_count <> "
    "(SELECT count(*) FROM posts p WHERE p.author_id = u.id AND p.kind = 'post')",
    "like_count": "SELECT count(*) FROM posts p WHERE like_count <> "
    "(SELECT count(*) FROM likes l WHERE l.post_id = p.id)",
    "share_count": "SELECT count(*) FROM posts p WHERE share_count <> "
    "(SELECT count(*) FROM posts s WHERE s.share_of_id = p.id)",
    "comment_count": "SELECT count(*) FROM posts p WHERE comment_count <> "
    "(SELECT count(*) FROM comments c WHERE c.post_id = p.id)",
}


@pytest.fixture
async def dsn(postgres_templates: PostgresTemplates) -> AsyncIterator[str]:
    name = await postgres_templates.clone()
    try:
        yield asyncpg_dsn(pg_url(name))
    finally:
        await postgres_templates.drop_clone(name)


async def _schema(conn: asyncpg.Connection) -> tuple[list[tuple[str, str]], ...]:
    tables = list(TABLES)
    return (
        [tuple(r) for r in await conn.fetch(INDEXES, tables)],
        [tuple(r) for r in await conn.fetch(CONSTRAINTS, tables)],
    )


async def test_the_seed_copies_exact_counters_and_restores_every_index(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        migrated = await _schema(conn)
        assert len(migrated[0]) > len(TABLES)  # secondary indexes exist to be set aside
        timings = await seed_database(dsn, TINY)
        assert {"graph", "follows", "posts", "indexes"} <= set(timings)
        assert await _schema(conn) == migrated
        assert await conn.fetchval("SELECT count(*) FROM users") == TINY.users
        assert await conn.fetchval("SELECT count(*) FROM auth_sessions") == TINY.active
        for counter, sql in DRIFT.items():
            assert await conn.fetchval(sql) == 0, counter
        shapes = await conn.fetchrow(
            "SELECT count(*) FILTER (WHERE kind = 'share') AS shares,"
            " count(*) FILTER (WHERE visibility = 'followers') AS followers,"
            " count(*) FILTER (WHERE visibility = 'private') AS private FROM posts"
        )
        assert min(shapes.values()) > 0  # shares, followers-only and private posts
        assert await conn.fetchval("SELECT count(*) FROM post_tags") > 0
        assert (
            await conn.fetchval("SELECT count(*) FROM follows WHERE follower_id = followee_id") == 0
        )
        # the power law: the first account is followed far more than the median one
        top, median = await conn.fetchrow(
            "SELECT max(follower_count), percentile_disc(0.5) WITHIN GROUP "
            "(ORDER BY follower_count) FROM users"
        )
        assert top > 5 * median
        assert await seed_database(dsn, TINY) == {}  # idempotent
    finally:
        await conn.close()


async def test_an_interrupted_seed_gives_the_indexes_back(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        migrated = await _schema(conn)
        await conn.execute(
            "INSERT INTO users (id, username, username_key, email, email_verified,"
            " display_name, bio, location, role, suspended, created_at, updated_at)"
            " VALUES (1, 'x', 'x', 'x@x.invalid', true, 'x', '', '', 'user', false, now(), now())"
        )
        await _defer_indexes(conn)  # as a seed does before its COPY, then dies
        assert len((await _schema(conn))[0]) < len(migrated[0])
        with pytest.raises(RuntimeError, match="--reset"):
            await seed_database(dsn, TINY)  # other data: refused, but the indexes return
        assert await _schema(conn) == migrated
        await _defer_indexes(conn)
        assert await seed_database(dsn, TINY, reset=True)
        assert await _schema(conn) == migrated
    finally:
        await conn.close()
