"""``tidings bench seed``: a social graph generated in Python and loaded with PostgreSQL COPY.

The graph is drawn from a seeded PRNG (deterministic for the same parameters) and streamed to
the server with binary ``COPY`` (asyncpg's ``copy_records_to_table``), while the tables'
secondary indexes and unique constraints are set aside; they are rebuilt once the rows are in,
which is far cheaper than maintaining them row by row. Their definitions are kept in
``tidings_bench.deferred_indexes`` first, so an interrupted seed gets them back on the next
``seed`` (which then has to run with ``--reset``).

Shape: users ``bu1 .. buN``; each follows ``FOLLOWS_PER_USER`` accounts, half chosen uniformly
and half log-uniformly over the user ranks (rank r is drawn with probability ~ 1/r), which gives
a power-law follower distribution: one log-uniform draw lands on ``bu1`` with probability
ln 2 / ln(N + 1), so at 1M users about 40 % of everyone follows ``bu1``, the next ranks
proportionally fewer, and the median account has about ten followers. Posts spread over the
last 30 days (10 % followers-only, 2 % private, one in three with a hashtag), every tenth post a
share of an earlier one, likes and comments on recent posts. Counters are counted from the rows
generated, so they are exact.

Idempotent: the parameters are stored as a comment on the ``users`` table; seeding again with
the same parameters does nothing, other parameters need ``--reset`` (which empties the tables).
"""

# The SQL below is assembled from catalogue names and integers, never from input: S608 is moot.
# ruff: noqa: S608
from __future__ import annotations

import contextlib
import math
import random
import time
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import asyncpg
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from tidings.bench.workload import USER_PREFIX
from tidings.core.ids import EPOCH_MS, NODE_BITS, SEQUENCE_BITS

SHIFT = NODE_BITS + SEQUENCE_BITS
DAY_MS = 86_400_000
FOLLOWS_PER_USER = 20
TABLES = ("comments", "likes", "post_tags", "posts", "follows", "auth_sessions", "users")
STATE_SCHEMA = "tidings_bench"
PROGRESS_EVERY = 20_000


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


def _moment(snowflake: int) -> datetime:
    return datetime.fromtimestamp(((snowflake >> SHIFT) + EPOCH_MS) / 1000, UTC)


def _visibility(k: int) -> str:
    if k % 10 == 7:
        return "followers"
    return "private" if k % 50 == 3 else "public"


def _is_share(k: int) -> bool:
    return k % 10 == 5


def _share_target(k: int) -> int:
    return k - 1 - (k % 7) * 10


@dataclass
class Graph:
    """Every row of the seed, as compact arrays indexed by user number n and post number k."""

    scale: Scale
    now_ms: int
    followees: array[int] = field(default_factory=lambda: array("i"))  # 20 slots per user, 0 = none
    follower_count: array[int] = field(default_factory=lambda: array("i"))
    following_count: array[int] = field(default_factory=lambda: array("i"))
    post_count: array[int] = field(default_factory=lambda: array("i"))
    author: array[int] = field(default_factory=lambda: array("i"))  # 0 = no such post
    share_of: array[int] = field(default_factory=lambda: array("i"))  # 0 = not a share
    likers: array[int] = field(default_factory=lambda: array("i"))  # 3 slots per recent post
    like_count: array[int] = field(default_factory=lambda: array("b"))
    share_count: array[int] = field(default_factory=lambda: array("i"))
    commenter: array[int] = field(default_factory=lambda: array("i"))  # 0 = no comment
    first_liked: int = 0

    def uid(self, n: int) -> int:
        return _snowflake(self.now_ms - 200 * DAY_MS) + (n << SHIFT)  # users 1 ms apart

    @property
    def post_base(self) -> int:
        return _snowflake(self.now_ms - 31 * DAY_MS)

    @property
    def post_step(self) -> int:
        return max(1, 30 * DAY_MS // max(self.scale.posts, 1)) << SHIFT

    def pid(self, k: int) -> int:
        return self.post_base + k * self.post_step


def build_graph(scale: Scale, now_ms: int, *, seed: int = 20261130) -> Graph:
    """Draw the whole graph; deterministic for the same scale and seed."""
    rng = random.Random(seed)  # noqa: S311 - a reproducible dataset, not a secret
    rand = rng.random
    n_users, n_posts = scale.users, scale.posts
    g = Graph(scale=scale, now_ms=now_ms)
    zeros_u = [0] * (n_users + 1)
    g.follower_count = array("i", zeros_u)
    g.following_count = array("i", zeros_u)
    g.post_count = array("i", zeros_u)
    log_users = math.log(n_users + 1)
    exp = math.exp
    followees = [0] * (FOLLOWS_PER_USER * (n_users + 1))
    follower_count = g.follower_count
    for n in range(1, n_users + 1):
        chosen: set[int] = set()
        for j in range(FOLLOWS_PER_USER):
            if j % 2 == 0:
                r = int(rand() * n_users) + 1
            else:
                r = min(n_users, int(exp(rand() * log_users)))
            if r != n:
                chosen.add(r)
        base = n * FOLLOWS_PER_USER
        for i, r in enumerate(chosen):
            followees[base + i] = r
            follower_count[r] += 1
        g.following_count[n] = len(chosen)
    g.followees = array("i", followees)
    del followees

    author = [0] * (n_posts + 1)
    share_of = [0] * (n_posts + 1)
    share_count = [0] * (n_posts + 1)
    post_count = g.post_count
    shared: set[tuple[int, int]] = set()
    for k in range(1, n_posts + 1):
        a = int(rand() * n_users) + 1
        if not _is_share(k):
            author[k] = a
            post_count[a] += 1
            continue
        t = _share_target(k)
        if k < 15 or author[t] == 0 or share_of[t] or _visibility(t) != "public":
            continue
        if (a, t) in shared:  # one share per author and post (uq_posts_author_id_share_of_id)
            continue
        shared.add((a, t))
        author[k], share_of[k] = a, t
        share_count[t] += 1
    del shared

    first = max(1, n_posts - n_posts // 5)
    g.first_liked = first
    likers = [0] * (3 * (n_posts - first + 1))
    like_count = [0] * (n_posts + 1)
    commenter = [0] * (n_posts + 1)
    for k in range(first, n_posts + 1):
        if k % 10 in (5, 3, 7):
            continue
        seen: set[int] = set()
        for m in range(3):
            u = int(rand() * n_users) + 1
            if u not in seen:
                seen.add(u)
                likers[3 * (k - first) + m] = u
        like_count[k] = len(seen)
    for k in range(1, n_posts + 1, 4):
        if k % 10 not in (5, 3, 7):
            commenter[k] = int(rand() * n_users) + 1
    g.author, g.share_of = array("i", author), array("i", share_of)
    g.share_count, g.likers = array("i", share_count), array("i", likers)
    g.like_count, g.commenter = array("b", like_count), array("i", commenter)
    return g


Rows = Iterator[tuple[object, ...]]


def _user_rows(g: Graph) -> Rows:
    for n in range(1, g.scale.users + 1):
        uid, name = g.uid(n), f"{USER_PREFIX}{n}"
        at = _moment(uid)
        yield (
            uid,
            name,
            name,
            f"{name}@bench.invalid",
            True,
            None,
            f"Bench {n}",
            "",
            "",
            "user",
            False,
            g.follower_count[n],
            g.following_count[n],
            g.post_count[n],
            at,
            at,
        )


def _session_rows(g: Graph) -> Rows:
    now = datetime.now(UTC)
    for n in range(1, min(g.scale.active, g.scale.users) + 1):
        yield (g.uid(n), g.uid(n), now)


def _follow_rows(g: Graph) -> Rows:
    fid = _snowflake(g.now_ms - 60 * DAY_MS)
    followees, slots = g.followees, FOLLOWS_PER_USER
    for n in range(1, g.scale.users + 1):
        follower = g.uid(n)
        for r in followees[n * slots : (n + 1) * slots]:
            if r:
                fid += 1 << SHIFT
                yield (fid, follower, g.uid(r), _moment(fid))


def _post_rows(g: Graph) -> Rows:
    for k in range(1, g.scale.posts + 1):
        a = g.author[k]
        if not a:
            continue
        pid, at = g.pid(k), _moment(g.pid(k))
        t = g.share_of[k]
        if t:
            kind, text, visibility, share = "share", "", "public", g.pid(t)
        else:
            kind, visibility, share = "post", _visibility(k), None
            text = f"post {k} #tag{k % 50}" if k % 3 == 0 else f"post {k}"
        yield (
            pid,
            g.uid(a),
            kind,
            text,
            visibility,
            share,
            None,
            "[]",
            "[]",
            False,
            g.like_count[k],
            g.share_count[k],
            1 if g.commenter[k] else 0,
            0,
            1,
            at,
        )


def _tag_rows(g: Graph) -> Rows:
    for k in range(3, g.scale.posts + 1, 3):
        if not _is_share(k):
            yield (f"tag{k % 50}", g.pid(k))


def _like_rows(g: Graph) -> Rows:
    first = g.first_liked
    for k in range(first, g.scale.posts + 1):
        if not g.like_count[k]:
            continue
        pid, at = g.pid(k), _moment(g.pid(k))
        for m in range(3):
            u = g.likers[3 * (k - first) + m]
            if u:
                yield (pid + m + 1, pid, g.uid(u), at)


def _comment_rows(g: Graph) -> Rows:
    for k in range(1, g.scale.posts + 1, 4):
        u = g.commenter[k]
        if u:
            pid = g.pid(k)
            yield (pid + 7, pid, g.uid(u), None, 0, "comment", 0, 1, _moment(pid))


@dataclass(frozen=True)
class Load:
    table: str
    columns: tuple[str, ...]
    rows: Callable[[Graph], Rows]
    count: Callable[[Graph], int]


LOADS = (
    Load(
        "users",
        (
            "id",
            "username",
            "username_key",
            "email",
            "email_verified",
            "password_hash",
            "display_name",
            "bio",
            "location",
            "role",
            "suspended",
            "follower_count",
            "following_count",
            "post_count",
            "created_at",
            "updated_at",
        ),
        _user_rows,
        lambda g: g.scale.users,
    ),
    Load(
        "auth_sessions",
        ("id", "user_id", "created_at"),
        _session_rows,
        lambda g: min(g.scale.active, g.scale.users),
    ),
    Load(
        "follows",
        ("id", "follower_id", "followee_id", "created_at"),
        _follow_rows,
        lambda g: sum(g.following_count),
    ),
    Load(
        "posts",
        (
            "id",
            "author_id",
            "kind",
            "text",
            "visibility",
            "share_of_id",
            "quote_of_id",
            "media",
            "links",
            "has_media",
            "like_count",
            "share_count",
            "comment_count",
            "quote_count",
            "version",
            "created_at",
        ),
        _post_rows,
        lambda g: sum(1 for a in g.author if a),
    ),
    Load(
        "post_tags",
        ("tag", "post_id"),
        _tag_rows,
        lambda g: sum(1 for k in range(3, g.scale.posts + 1, 3) if not _is_share(k)),
    ),
    Load(
        "likes", ("id", "post_id", "user_id", "created_at"), _like_rows, lambda g: sum(g.like_count)
    ),
    Load(
        "comments",
        (
            "id",
            "post_id",
            "author_id",
            "parent_id",
            "depth",
            "text",
            "reply_count",
            "version",
            "created_at",
        ),
        _comment_rows,
        lambda g: sum(1 for c in g.commenter if c),
    ),
)

SECONDARY_INDEXES = """
SELECT ix.relname AS name,
    CASE WHEN con.oid IS NULL THEN pg_get_indexdef(i.indexrelid)
        ELSE format('ALTER TABLE %I ADD CONSTRAINT %I %s', t.relname, con.conname,
            pg_get_constraintdef(con.oid)) END AS definition,
    CASE WHEN con.oid IS NULL THEN format('DROP INDEX %I', ix.relname)
        ELSE format('ALTER TABLE %I DROP CONSTRAINT %I', t.relname, con.conname) END AS drop
FROM pg_index AS i
JOIN pg_class AS ix ON ix.oid = i.indexrelid
JOIN pg_class AS t ON t.oid = i.indrelid
LEFT JOIN pg_constraint AS con
    ON con.conindid = i.indexrelid AND con.conrelid = t.oid AND con.contype = 'u'
WHERE t.relnamespace = current_schema()::regnamespace AND t.relname = ANY($1::text[])
    AND NOT i.indisprimary
ORDER BY ix.relname
"""


async def _defer_indexes(conn: asyncpg.Connection) -> None:
    """Set the secondary indexes aside, remembering them first (a no-op if already aside)."""
    async with conn.transaction():
        await conn.execute(
            f"CREATE SCHEMA IF NOT EXISTS {STATE_SCHEMA}; "
            f"CREATE TABLE IF NOT EXISTS {STATE_SCHEMA}.deferred_indexes "
            "(name text PRIMARY KEY, definition text NOT NULL)"
        )
        for row in await conn.fetch(SECONDARY_INDEXES, list(TABLES)):
            await conn.execute(
                f"INSERT INTO {STATE_SCHEMA}.deferred_indexes VALUES ($1, $2)",
                row["name"],
                row["definition"],
            )
            await conn.execute(row["drop"])


async def restore_indexes(conn: asyncpg.Connection) -> int:
    """Rebuild every index a seed set aside; returns how many."""
    exists = await conn.fetchval("SELECT to_regclass($1)", f"{STATE_SCHEMA}.deferred_indexes")
    if exists is None:
        return 0
    rows = await conn.fetch(
        f"SELECT name, definition FROM {STATE_SCHEMA}.deferred_indexes ORDER BY name"
    )
    for row in rows:
        async with conn.transaction():
            await conn.execute(row["definition"])
            await conn.execute(
                f"DELETE FROM {STATE_SCHEMA}.deferred_indexes WHERE name = $1", row["name"]
            )
    return len(rows)


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
            await restore_indexes(conn)  # an interrupted seed set them aside
            raise RuntimeError(
                f"the database holds other data ({marker or 'not a bench seed'}); "
                "pass --reset to empty it first"
            )
        if has_rows:
            await conn.execute(f"TRUNCATE {', '.join(TABLES)} CASCADE")
        with contextlib.suppress(asyncpg.InsufficientPrivilegeError):
            await conn.execute("SET session_replication_role = replica")  # skip FK triggers
        await conn.execute("SET synchronous_commit = off")
        await conn.execute("SET maintenance_work_mem = '512MB'")
        return await _load(conn, scale)
    finally:
        await conn.close()


def _counted(rows: Rows, advance: Callable[[int], None]) -> Rows:
    done = 0
    for done, row in enumerate(rows, 1):
        if done % PROGRESS_EVERY == 0:
            advance(PROGRESS_EVERY)
        yield row
    advance(done % PROGRESS_EVERY)


async def _load(conn: asyncpg.Connection, scale: Scale) -> dict[str, float]:
    timings: dict[str, float] = {}
    columns = (
        TextColumn("{task.description:<16}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, transient=False) as progress:
        started = time.perf_counter()
        task = progress.add_task("drawing the graph", total=None)
        graph = build_graph(scale, int(time.time() * 1000))
        progress.update(task, total=1, completed=1)
        timings["graph"] = time.perf_counter() - started
        await _defer_indexes(conn)
        for load in LOADS:
            started = time.perf_counter()
            task = progress.add_task(f"copy {load.table}", total=load.count(graph))

            def advance(n: int, task: int = task) -> None:
                progress.advance(task, n)  # type: ignore[arg-type]

            async with conn.transaction():
                await conn.copy_records_to_table(
                    load.table,
                    records=_counted(load.rows(graph), advance),
                    columns=list(load.columns),
                )
            timings[load.table] = time.perf_counter() - started
        del graph
        started = time.perf_counter()
        task = progress.add_task("indexes", total=None)
        built = await restore_indexes(conn)
        progress.update(task, total=built, completed=built)
        timings["indexes"] = time.perf_counter() - started
        started = time.perf_counter()
        # VACUUM as well as ANALYZE: rows loaded by COPY have no visibility map yet, so until
        # autovacuum comes by (it may be off) an index-only scan still visits the heap
        await conn.execute("VACUUM (ANALYZE)")
        timings["vacuum"] = time.perf_counter() - started
    await conn.execute(f"COMMENT ON TABLE users IS '{scale.marker}'")
    return timings
