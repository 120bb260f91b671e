"""``tidings bench seed``: a social graph generated server-side on PostgreSQL.

Every step is one ``INSERT ... SELECT generate_series(...)`` with hashed arithmetic instead of
client-side randomness, so a run is deterministic and nothing crosses the wire row by row.
Shape: users ``bu1 .. buN``; each follows ``FOLLOWS_PER_USER`` accounts, half chosen uniformly and
half log-uniformly over the user ranks (rank r is drawn with probability ~ 1/r), which gives a
power-law follower distribution: ``bu1`` is followed by ~5 % of the users, the median account by
about ten. Posts spread over the last 30 days (10 % followers-only, 2 % private, one in three
with a hashtag), every tenth post a share of an earlier one, likes and comments on recent posts;
counters are computed from the rows, so they are exact.

Idempotent: the parameters are stored as a comment on the ``users`` table; seeding again with
the same parameters does nothing, other parameters need ``--reset`` (which empties the tables).
"""

# The SQL below is assembled from integers computed here, never from input: S608 is moot.
# ruff: noqa: S608
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass

import asyncpg
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from tidings.bench.workload import USER_PREFIX
from tidings.core.ids import EPOCH_MS, NODE_BITS, SEQUENCE_BITS

SHIFT = NODE_BITS + SEQUENCE_BITS
DAY_MS = 86_400_000
FOLLOWS_PER_USER = 20
TABLES = ("comments", "likes", "post_tags", "posts", "follows", "auth_sessions", "users")


@dataclass(frozen=True)
class Scale:
    users: int
    posts: int
    active: int  # users with a sign-in session (the benchmark's clients) and a Redis timeline

    @property
    def marker(self) -> str:
        return (
            f"tidings-bench users={self.users} posts={self.posts} active={self.active} "
            f"names={USER_PREFIX}"
        )


SCALES = {
    "small": Scale(users=2_000, posts=20_000, active=200),
    "full": Scale(users=1_000_000, posts=10_000_000, active=20_000),
}


def _snowflake(ms: int) -> int:
    return (ms - EPOCH_MS) << SHIFT


def _uniform(expr: str) -> str:
    """A deterministic value in [0, 1) from an integer SQL expression."""
    return f"((hashint8(({expr})::bigint)::bigint & 2147483647) / 2147483648.0)"


def steps(scale: Scale, now_ms: int) -> list[tuple[str, str]]:
    n_users, n_posts = scale.users, scale.posts
    ub, us = _snowflake(now_ms - 200 * DAY_MS), 1 << SHIFT  # users 1 ms apart
    fb = _snowflake(now_ms - 60 * DAY_MS)
    step_ms = max(1, 30 * DAY_MS // max(n_posts, 1))
    pb, ps = _snowflake(now_ms - 31 * DAY_MS), step_ms << SHIFT

    def uid(n: str) -> str:
        return f"({ub}::bigint + ({n})::bigint * {us})"

    def pid(k: str) -> str:
        return f"({pb}::bigint + ({k})::bigint * {ps})"

    ts = f"to_timestamp(((({{}}) >> {SHIFT}) + {EPOCH_MS}) / 1000.0)".format
    log_rank = (
        f"least({n_users}, floor(exp({_uniform('seq * 2 + 1')} * ln({n_users} + 1)))::bigint)"
    )
    uni_rank = f"(floor({_uniform('seq * 2')} * {n_users})::bigint + 1)"
    author = f"(floor({_uniform('k * 3')} * {n_users})::bigint + 1)"
    liker = f"(floor({_uniform('k * 7 + m')} * {n_users})::bigint + 1)"
    commenter = f"(floor({_uniform('k * 11')} * {n_users})::bigint + 1)"
    post_cols = (
        "id, author_id, kind, text, visibility, share_of_id, quote_of_id, media, links, "
        "has_media, like_count, share_count, comment_count, quote_count, version, created_at"
    )
    return [
        (
            "users",
            f"""INSERT INTO users (id, username, username_key, email, email_verified,
                password_hash, display_name, bio, location, role, suspended, follower_count,
                following_count, post_count, created_at, updated_at)
            SELECT {uid("n")}, '{USER_PREFIX}' || n, '{USER_PREFIX}' || n,
                '{USER_PREFIX}' || n || '@bench.invalid', true, NULL,
                'Bench ' || n, '', '', 'user', false, 0, 0, 0, {ts(uid("n"))}, {ts(uid("n"))}
            FROM generate_series(1::bigint, {n_users}) AS n""",
        ),
        (
            "sessions",
            f"""INSERT INTO auth_sessions (id, user_id, created_at)
            SELECT {uid("n")}, {uid("n")}, now()
            FROM generate_series(1::bigint, {scale.active}) AS n""",
        ),
        (
            "follows",
            f"""INSERT INTO follows (id, follower_id, followee_id, created_at)
            SELECT {fb}::bigint + seq * 4096, {uid("n")}, {uid("r")}, {ts(f"{fb}::bigint")}
            FROM (
                SELECT n, seq, CASE WHEN j % 2 = 0 THEN {uni_rank} ELSE {log_rank} END AS r
                FROM generate_series(1::bigint, {n_users}) AS n,
                    generate_series(1::bigint, {FOLLOWS_PER_USER}) AS j,
                    LATERAL (SELECT n * 64 + j AS seq) AS s
            ) AS pairs
            WHERE r <> n
            ON CONFLICT DO NOTHING""",
        ),
        (
            "posts",
            f"""INSERT INTO posts ({post_cols})
            SELECT {pid("k")}, {uid(author)}, 'post',
                concat_ws(' ', 'post', k::text, CASE WHEN k % 3 = 0 THEN '#tag' || (k % 50) END),
                CASE WHEN k % 10 = 7 THEN 'followers' WHEN k % 50 = 3 THEN 'private'
                    ELSE 'public' END,
                NULL, NULL, '[]'::json, '[]'::json, false, 0, 0, 0, 0, 1, {ts(pid("k"))}
            FROM generate_series(1::bigint, {n_posts}) AS k WHERE k % 10 <> 5""",
        ),
        (
            "shares",
            f"""INSERT INTO posts ({post_cols})
            SELECT {pid("k")}, {uid(author)}, 'share', '', 'public', t.id, NULL, '[]'::json,
                '[]'::json, false, 0, 0, 0, 0, 1, {ts(pid("k"))}
            FROM generate_series(15::bigint, {n_posts}, 10) AS k
            JOIN posts AS t ON t.id = {pid("k - 1 - (k % 7) * 10")}
            WHERE t.visibility = 'public' AND t.kind = 'post'
            ON CONFLICT DO NOTHING""",
        ),
        (
            "hashtags",
            f"""INSERT INTO post_tags (tag, post_id)
            SELECT 'tag' || (k % 50), {pid("k")}
            FROM generate_series(3::bigint, {n_posts}, 3) AS k WHERE k % 10 <> 5""",
        ),
        (
            "likes",
            f"""INSERT INTO likes (id, post_id, user_id, created_at)
            SELECT {pid("k")} + m, {pid("k")}, {uid(liker)}, {ts(pid("k"))}
            FROM generate_series(greatest(1, {n_posts} - {n_posts} / 5)::bigint, {n_posts}) AS k,
                generate_series(1::bigint, 3) AS m
            WHERE k % 10 NOT IN (5, 3, 7)
            ON CONFLICT DO NOTHING""",
        ),
        (
            "comments",
            f"""INSERT INTO comments (id, post_id, author_id, parent_id, depth, text, reply_count,
                version, created_at)
            SELECT {pid("k")} + 7, {pid("k")}, {uid(commenter)}, NULL, 0, 'comment', 0, 1,
                {ts(pid("k"))}
            FROM generate_series(1::bigint, {n_posts}, 4) AS k WHERE k % 10 NOT IN (5, 3, 7)""",
        ),
        (
            "counters",
            """UPDATE users AS u SET follower_count = c.n FROM (
                SELECT followee_id AS id, count(*) AS n FROM follows GROUP BY followee_id) AS c
                WHERE u.id = c.id;
            UPDATE users AS u SET following_count = c.n FROM (
                SELECT follower_id AS id, count(*) AS n FROM follows GROUP BY follower_id) AS c
                WHERE u.id = c.id;
            UPDATE users AS u SET post_count = c.n FROM (
                SELECT author_id AS id, count(*) AS n FROM posts WHERE kind = 'post'
                GROUP BY author_id) AS c WHERE u.id = c.id;
            UPDATE posts AS p SET like_count = c.n FROM (
                SELECT post_id AS id, count(*) AS n FROM likes GROUP BY post_id) AS c
                WHERE p.id = c.id;
            UPDATE posts AS p SET share_count = c.n FROM (
                SELECT share_of_id AS id, count(*) AS n FROM posts WHERE kind = 'share'
                GROUP BY share_of_id) AS c WHERE p.id = c.id;
            UPDATE posts AS p SET comment_count = c.n FROM (
                SELECT post_id AS id, count(*) AS n FROM comments GROUP BY post_id) AS c
                WHERE p.id = c.id""",
        ),
        ("analyze", "ANALYZE"),
    ]


async def seeded_marker(conn: asyncpg.Connection) -> str | None:
    value = await conn.fetchval("SELECT obj_description('users'::regclass, 'pg_class')")
    return str(value) if value else None


async def seed_database(dsn: str, scale: Scale, *, reset: bool = False) -> dict[str, float]:
    """Fill the (migrated) database; returns seconds per step (empty when already seeded)."""
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        marker = await seeded_marker(conn)
        if marker == scale.marker and not reset:
            return {}
        has_rows = await conn.fetchval("SELECT EXISTS (SELECT 1 FROM users)")
        if has_rows and not reset:
            raise RuntimeError(
                f"the database holds other data ({marker or 'not a bench seed'}); "
                "pass --reset to empty it first"
            )
        if has_rows:
            await conn.execute(f"TRUNCATE {', '.join(TABLES)} CASCADE")
        with contextlib.suppress(asyncpg.InsufficientPrivilegeError):
            await conn.execute("SET session_replication_role = replica")  # skip FK triggers
        await conn.execute("SET synchronous_commit = off")
        timings: dict[str, float] = {}
        plan = steps(scale, int(time.time() * 1000))
        columns = (TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn())
        with Progress(*columns, transient=False) as progress:
            task = progress.add_task("seeding", total=len(plan))
            for name, sql in plan:
                progress.update(task, description=f"seeding {name}")
                started = time.perf_counter()
                async with conn.transaction():
                    await conn.execute(sql)
                timings[name] = time.perf_counter() - started
                progress.advance(task)
        await conn.execute(f"COMMENT ON TABLE users IS '{scale.marker}'")
        return timings
    finally:
        await conn.close()
