"""A realistic volume of social data, generated server-side on PostgreSQL in a few seconds.

Everything is ``INSERT ... SELECT generate_series(...)`` with arithmetic instead of randomness, so a
run is deterministic. Ids are snowflakes (:mod:`tidings.core.ids` layout) that increase with time:
users joined 300 days ago, follows date from 60 days ago, posts span the last ~28 days, and
likes and comments follow their post.

Shape (defaults):

* 20,000 users; ``u1`` .. ``u5`` are celebrities followed by thousands (15k, 8k, 4k, 2k, 1k) and
  posting a lot (5,000, 2,000, 1,000, 500, 500 posts); every user follows ~10 others, so most
  accounts have tens of followers; ``u6`` follows 1,505 accounts and ``u7`` 700; one user in
  1,000 is suspended; a few hundred blocks and mutes.
* 200,000 posts (10 % followers-only, 3 % private, 1 % deleted, 1 in 6 with media, 2 % quotes)
  and ~21,500 shares of earlier public posts (one after every 8th post); hashtags ``#daily``
  (1 in 3), ``#news`` (1 in 20) and ``#rare`` (1 in 1,000) in ``post_tags``.
* ~126,000 likes: 6,000 on the hot post (the newest public post of ``u1``), two each on the
  60,000 newest posts; ~55,500 comments: 3,000 top-level on the hot post and 1,500 replies to its
  first comment (the hot comment), one on each of 45,000 other posts and a reply to one in seven
  of those.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field

import asyncpg

from tidings.core.ids import EPOCH_MS, NODE_BITS, SEQUENCE_BITS

SHIFT = NODE_BITS + SEQUENCE_BITS
DAY_MS = 86_400_000


def snowflake(ms: int) -> int:
    return (ms - EPOCH_MS) << SHIFT


@dataclass(frozen=True)
class Volume:
    users: int = 20_000
    posts: int = 200_000
    follows_per_user: int = 10
    celebrity_followers: tuple[int, ...] = (15_000, 8_000, 4_000, 2_000, 1_000)
    heavy_following: int = 1_500  # u6 follows this many (plus the celebrities)
    hot_likes: int = 6_000
    hot_comments: int = 3_000
    hot_replies: int = 1_500
    bulk_likes: int = 120_000
    bulk_comments: int = 45_000


@dataclass
class Seeded:
    """What a test needs to know about the data."""

    volume: Volume
    counts: dict[str, int] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    hot_post_id: int = 0
    hot_comment_id: int = 0

    def user_id(self, n: int) -> int:
        return self._user_base + n * self._user_step

    _user_base: int = 0
    _user_step: int = 0


async def seed(dsn: str, volume: Volume | None = None) -> Seeded:
    """Fill a migrated, empty database at ``dsn`` (a plain ``postgresql://`` DSN)."""
    v = volume or Volume()
    now = int(time.time() * 1000)
    user_start, follow_start, post_start = now - 300 * DAY_MS, now - 60 * DAY_MS, now - 29 * DAY_MS
    post_step_ms = 12_000
    assert user_start > EPOCH_MS

    ub, us = snowflake(user_start), 1000 << SHIFT  # users one second apart
    pb, ps = snowflake(post_start), post_step_ms << SHIFT
    share_offset = (post_step_ms // 2) << SHIFT
    fb, fs = snowflake(follow_start), 10 << SHIFT
    out = Seeded(volume=v, _user_base=ub, _user_step=us)

    def uid(n: str) -> str:
        return f"({ub}::bigint + ({n})::bigint * {us})"

    def pid(k: str) -> str:
        return f"({pb}::bigint + ({k})::bigint * {ps})"

    def ts(id_sql: str) -> str:
        return f"to_timestamp(((({id_sql}) >> {SHIFT}) + {EPOCH_MS}) / 1000.0)"

    # The post author of post k: celebrities post a lot, everyone else exactly posts/users times.
    author_n = (
        "CASE WHEN k % 40 = 0 THEN 1 WHEN k % 100 = 1 THEN 2 WHEN k % 200 = 3 THEN 3 "
        f"WHEN k % 400 = 5 THEN 4 WHEN k % 400 = 7 THEN 5 ELSE (k * 7919) % {v.users} + 1 END"
    )
    hot_k = max(
        k
        for k in range(v.posts - 400, v.posts + 1)
        if k % 40 == 0 and k % 10 != 7 and k % 29 != 3 and k % 97 != 5 and k % 50 != 25
    )
    out.hot_post_id = pb + hot_k * ps
    out.hot_comment_id = out.hot_post_id + 100_001

    celeb_follows = " UNION ALL ".join(
        f"SELECT {c * 1_000_000 + 2_000_000} + n, {uid('n + 10')}, {uid(str(c))} "
        f"FROM generate_series(1::bigint, {count}) AS n"
        for c, count in enumerate(v.celebrity_followers, start=1)
    )
    steps: list[tuple[str, str]] = [
        (
            "users",
            f"""
            INSERT INTO users (id, username, username_key, email, email_verified, password_hash,
                display_name, bio, avatar_url, location, website, role, suspended,
                follower_count, following_count, post_count, created_at, updated_at)
            SELECT {uid("n")}, 'u' || n, 'u' || n, 'u' || n || '@example.com', true, NULL,
                'User ' || n, '', NULL, '', NULL, 'user', n % 1000 = 999, 0, 0, 0,
                {ts(uid("n"))}, {ts(uid("n"))}
            FROM generate_series(1::bigint, {v.users}) AS n
            """,
        ),
        (
            "follows",
            f"""
            INSERT INTO follows (id, follower_id, followee_id, created_at)
            SELECT {fb}::bigint + seq * {fs}, follower, followee, {ts(f"{fb}::bigint")}
            FROM (
                SELECT n * 64 + j AS seq, {uid("n")} AS follower,
                    {uid(f"((n * 7919 + j * 104729) % {v.users}) + 1")} AS followee
                FROM generate_series(1::bigint, {v.users}) AS n,
                    generate_series(1::bigint, {v.follows_per_user}) AS j
                    WHERE n > 7 AND (n * 7919 + j * 104729) % {v.users} + 1 > 5
                UNION ALL {celeb_follows}
                UNION ALL SELECT 10000000 + n, {uid("6")}, {uid("n + 1000")}
                    FROM generate_series(0::bigint, {v.heavy_following - 1}) AS n
                UNION ALL SELECT 11000000 + n, {uid("6")}, {uid("n")}
                    FROM generate_series(1::bigint, 5) AS n
                UNION ALL SELECT 12000000 + n, {uid("7")}, {uid("n * 3 + 5000")}
                    FROM generate_series(1::bigint, 700) AS n
            ) AS pairs  -- unique by construction: no ON CONFLICT needed
            WHERE follower <> followee
            """,
        ),
        (
            "posts",
            f"""
            INSERT INTO posts (id, author_id, kind, text, visibility, share_of_id, quote_of_id,
                media, links, has_media, like_count, share_count, comment_count, quote_count,
                version, created_at, edited_at, deleted_at)
            SELECT {pid("k")}, {uid(author_n)}, 'post',
                concat_ws(' ', 'post', k::text,
                    CASE WHEN k % 3 = 0 THEN '#daily' END,
                    CASE WHEN k % 20 = 0 THEN '#news' END,
                    CASE WHEN k % 1000 = 0 THEN '#rare' END),
                CASE WHEN k % 10 = 7 THEN 'followers' WHEN k % 29 = 3 THEN 'private'
                    ELSE 'public' END,
                NULL,
                CASE WHEN k % 50 = 25 AND k > 1000 THEN {pid("k - 990")} END,
                CASE WHEN k % 6 = 0
                    THEN '[{{"url": "https://img.example/p.png", "type": "image", "alt_text": ""}}]'
                    ELSE '[]' END::json,
                '[]'::json, k % 6 = 0, 0, 0, 0, 0, 1,
                {ts(pid("k"))}, NULL,
                CASE WHEN k % 97 = 5 THEN {ts(pid("k"))} END
            FROM generate_series(1::bigint, {v.posts}) AS k
            """,
        ),
        ("analyze posts", "ANALYZE posts"),
        (
            "shares",
            f"""
            INSERT INTO posts (id, author_id, kind, text, visibility, share_of_id, quote_of_id,
                media, links, has_media, like_count, share_count, comment_count, quote_count,
                version, created_at, edited_at, deleted_at)
            SELECT {pid("k")} + {share_offset}, {uid(f"(k * 104729) % {v.users} + 1")}, 'share',
                '', 'public', t.id, NULL, '[]'::json, '[]'::json, t.has_media, 0, 0, 0, 0, 1,
                {ts(f"{pid('k')} + {share_offset}")}, NULL, NULL
            FROM generate_series(1000::bigint, {v.posts}) AS k
            JOIN posts AS t ON t.id = {pid("k - (k % 977) - 1")}
            WHERE k % 8 = 4 AND t.visibility = 'public' AND t.deleted_at IS NULL
            ON CONFLICT DO NOTHING
            """,
        ),
        (
            "post_tags",
            f"""
            INSERT INTO post_tags (tag, post_id)
            SELECT 'daily', {pid("k")} FROM generate_series(3::bigint, {v.posts}, 3) AS k
            UNION ALL
            SELECT 'news', {pid("k")} FROM generate_series(20::bigint, {v.posts}, 20) AS k
            UNION ALL
            SELECT 'rare', {pid("k")} FROM generate_series(1000::bigint, {v.posts}, 1000) AS k
            """,
        ),
        (
            "likes",
            f"""
            INSERT INTO likes (id, post_id, user_id, created_at)
            SELECT post_id + row_number() OVER (PARTITION BY post_id ORDER BY user_id),
                post_id, user_id, {ts("post_id")}
            FROM (
                SELECT DISTINCT post_id, user_id FROM (
                    SELECT {out.hot_post_id}::bigint AS post_id, {uid("n")} AS user_id
                        FROM generate_series(1::bigint, {v.hot_likes}) AS n
                    UNION ALL
                    SELECT {pid(f"(m * 7907) % 60000 + {v.posts - 60000} + 1")},
                        {uid(f"(m * 104729 + (m / 60000) * 4999) % {v.users} + 1")}
                    FROM generate_series(1::bigint, {v.bulk_likes}) AS m
                ) AS pairs
            ) AS distinct_pairs
            """,
        ),
        (
            "comments",
            f"""
            INSERT INTO comments (id, post_id, author_id, parent_id, depth, text, reply_count,
                version, created_at, edited_at, deleted_at)
            SELECT {out.hot_post_id}::bigint + 100000 + n, {out.hot_post_id},
                {uid(f"(n * 31) % {v.users} + 1")}, NULL::bigint, 0, 'comment ' || n,
                CASE WHEN n = 1 THEN {v.hot_replies} ELSE 0 END, 1,
                {ts(str(out.hot_post_id))}, NULL::timestamptz, NULL::timestamptz
            FROM generate_series(1::bigint, {v.hot_comments}) AS n
            UNION ALL
            SELECT {pid(f"(m * 7907) % {v.posts} + 1")} + 100001,
                {pid(f"(m * 7907) % {v.posts} + 1")},
                {uid(f"(m * 7919) % {v.users} + 1")}, NULL, 0, 'comment', 0, 1,
                {ts(pid(f"(m * 7907) % {v.posts} + 1"))}, NULL, NULL
            FROM generate_series(1::bigint, {v.bulk_comments}) AS m
            WHERE {pid(f"(m * 7907) % {v.posts} + 1")} <> {out.hot_post_id}
            """,
        ),
        (
            "replies",
            f"""
            INSERT INTO comments (id, post_id, author_id, parent_id, depth, text, reply_count,
                version, created_at, edited_at, deleted_at)
            SELECT {out.hot_post_id}::bigint + 200000 + n, {out.hot_post_id},
                {uid(f"(n * 37) % {v.users} + 1")}, {out.hot_comment_id}, 1, 'reply ' || n, 0,
                1, {ts(str(out.hot_post_id))}, NULL::timestamptz, NULL::timestamptz
            FROM generate_series(1::bigint, {v.hot_replies}) AS n
            UNION ALL
            SELECT c.id + 100000, c.post_id, {uid(f"(c.id % 9973) % {v.users} + 1")}, c.id, 1,
                'reply', 0, 1, c.created_at, NULL, NULL
            FROM comments AS c
            WHERE c.parent_id IS NULL AND c.post_id <> {out.hot_post_id}
                AND c.id % 7 = 0
            """,
        ),
        (
            "blocks and mutes",
            f"""
            INSERT INTO blocks (id, blocker_id, blocked_id, created_at)
            SELECT {fb}::bigint + n, {uid(f"(n * 7919) % {v.users} + 1")},
                {uid(f"(n * 104729) % {v.users} + 1")}, {ts(f"{fb}::bigint")}
            FROM generate_series(1::bigint, 300) AS n
            WHERE (n * 7919) % {v.users} <> (n * 104729) % {v.users}
            UNION ALL SELECT {fb}::bigint + 1000 + n, {uid("6")}, {uid("n + 3000")},
                {ts(f"{fb}::bigint")} FROM generate_series(1::bigint, 5) AS n
            ON CONFLICT DO NOTHING;
            INSERT INTO mutes (id, muter_id, muted_id, created_at)
            SELECT {fb}::bigint + n, {uid(f"(n * 104729) % {v.users} + 1")},
                {uid(f"(n * 7919) % {v.users} + 1")}, {ts(f"{fb}::bigint")}
            FROM generate_series(1::bigint, 300) AS n
            WHERE (n * 7919) % {v.users} <> (n * 104729) % {v.users}
            UNION ALL SELECT {fb}::bigint + 1000 + n, {uid("6")}, {uid("n + 1000")},
                {ts(f"{fb}::bigint")} FROM generate_series(1::bigint, 10) AS n
            ON CONFLICT DO NOTHING
            """,
        ),
    ]

    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        # The generated rows are consistent by construction: skip the per-row foreign-key
        # triggers when allowed (superuser), which halves the load time.
        with contextlib.suppress(asyncpg.InsufficientPrivilegeError):
            await conn.execute("SET session_replication_role = replica")
        await conn.execute("SET synchronous_commit = off")
        for name, sql in steps:
            started = time.perf_counter()
            await conn.execute(sql)
            out.timings[name] = time.perf_counter() - started
        # Reply counts of the bulk comments, so tombstone rules see consistent threads.
        started = time.perf_counter()
        await conn.execute(
            f"""
            UPDATE comments AS c SET reply_count = 1
            WHERE c.parent_id IS NULL AND c.post_id <> {out.hot_post_id} AND c.id % 7 = 0
            """
        )
        await conn.execute("ANALYZE")
        out.timings["analyze"] = time.perf_counter() - started
        for table in ("users", "follows", "posts", "post_tags", "likes", "comments"):
            out.counts[table] = await conn.fetchval(f"SELECT count(*) FROM {table}")
        out.counts["shares"] = await conn.fetchval(
            "SELECT count(*) FROM posts WHERE kind = 'share'"
        )
        out.counts["replies"] = await conn.fetchval(
            "SELECT count(*) FROM comments WHERE parent_id IS NOT NULL"
        )
    finally:
        await conn.close()
    return out
