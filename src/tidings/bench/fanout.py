"""Fan-out throughput: the consumer's own function (:func:`tidings.feeds.fanout.fan_out`)
timed in-process against the benchmark's PostgreSQL and Redis.

The author is the account with the most followers that is still fanned out (at most
``TIDINGS_FANOUT_THRESHOLD``; above it posts are merged at read time). Every follower gets a
timeline, so every follower costs a write (the worst case: in production only active followers
have one). The timelines are scratch ones under a key prefix of their own (the real timelines
are never touched, and the scratch keys are deleted afterwards), filled to their cap with ids
below every real post, so each write also trims, as on a full timeline. The cap is lowered to
:data:`CAP` to bound Redis memory; above 128 entries a sorted set is a skiplist, as the real
800-entry ones are. Each trial fans out one of the author's existing posts (a different one
each time, so every write is new): entries written / seconds. The same timelines then take the
issue's raw prototype (:func:`_raw_pipeline`) as the baseline of the same run; the issue asks
for twice its rate.
"""

from __future__ import annotations

import secrets
import statistics
import time
from typing import Any

from redis.asyncio import Redis
from sqlalchemy import text

from tidings.core.container import Container
from tidings.feeds.fanout import fan_out
from tidings.feeds.store import member, store_of
from tidings.settings import Settings

CAP = 200
TRIALS = 3
KEYS_PER_PIPELINE = 500
RAW_ENTRY_BASE = 10**18  # above every snowflake id of this era (19 digits, like member())


async def _raw_pipeline(redis: Redis, keys: list[str], trial: int) -> dict[str, float]:
    """The issue's raw prototype, as a baseline in the same run: follower ids already in hand,
    one ``ZADD`` and one ``ZREMRANGEBYRANK`` (trim to the cap) per timeline, redis-py
    pipelines of :data:`KEYS_PER_PIPELINE` timelines. The entry is a new id above every real
    post, so every write is new."""
    entry = member(RAW_ENTRY_BASE + trial)
    written = 0
    started = time.perf_counter()
    for start in range(0, len(keys), KEYS_PER_PIPELINE):
        async with redis.pipeline(transaction=False) as pipe:
            for key in keys[start : start + KEYS_PER_PIPELINE]:
                pipe.zadd(key, {entry: 0})
                pipe.zremrangebyrank(key, 0, -(CAP + 1))
            replies = await pipe.execute()
        written += sum(int(added) for added in replies[::2])  # ZADD: 1 for a new entry
    seconds = time.perf_counter() - started
    return {"entries": written, "seconds": round(seconds, 4), "per_s": written / seconds}


async def fanout_throughput(settings: Settings, trials: int = TRIALS) -> dict[str, Any]:
    if settings.feed_store != "redis":
        return {"skipped": "TIDINGS_FEED_STORE is not redis: there is no fan-out"}
    prefix = f"{settings.feed_key_prefix}benchfanout:{secrets.token_hex(4)}:"
    scratch = settings.model_copy(update={"feed_key_prefix": prefix, "feed_cap": CAP})
    container = Container.build(scratch)
    redis = container.redis
    assert redis is not None
    try:
        async with container.db.unit_of_work(write=False) as session:
            found = (
                await session.execute(
                    text(
                        "SELECT id, username, follower_count FROM users "
                        "WHERE follower_count <= :limit ORDER BY follower_count DESC, id LIMIT 1"
                    ),
                    {"limit": settings.fanout_threshold},
                )
            ).one_or_none()
            if found is None:
                return {"skipped": "no users"}
            author, username, count = int(found[0]), str(found[1]), int(found[2])
            followers = [
                int(u)
                for u in (
                    await session.execute(
                        text("SELECT follower_id FROM follows WHERE followee_id = :a"),
                        {"a": author},
                    )
                ).scalars()
            ]
            posts = [
                int(p)
                for p in (
                    await session.execute(
                        text(
                            "SELECT id FROM posts WHERE author_id = :a AND deleted_at IS NULL "
                            "AND visibility IN ('public', 'followers') ORDER BY id DESC LIMIT :n"
                        ),
                        {"a": author, "n": trials},
                    )
                ).scalars()
            ]
            store = store_of(session)
            assert store is not None
        filler = {member(i): 0 for i in range(1, CAP + 1)}  # below every real post id
        owners = [author, *followers]
        started = time.perf_counter()
        for start in range(0, len(owners), KEYS_PER_PIPELINE):
            async with redis.pipeline(transaction=False) as pipe:
                for owner in owners[start : start + KEYS_PER_PIPELINE]:
                    pipe.zadd(store.timeline_key(owner), filler)
                await pipe.execute()
        prepared = time.perf_counter() - started
        runs: list[dict[str, float]] = []
        for post in posts:
            async with container.db.unit_of_work(write=False) as session:
                store = store_of(session)
                assert store is not None
                started = time.perf_counter()
                written = await fan_out(store, session, post, author)
                seconds = time.perf_counter() - started
            runs.append(
                {"entries": written, "seconds": round(seconds, 4), "per_s": written / seconds}
            )
        median = statistics.median(r["per_s"] for r in runs) if runs else 0.0
        keys = [store.timeline_key(owner) for owner in owners]
        raw = [await _raw_pipeline(redis, keys, trial) for trial in range(trials)]
        raw_median = statistics.median(r["per_s"] for r in raw) if raw else 0.0
        return {
            "author": username,
            "followers": count,
            "timelines": len(owners),
            "threshold": settings.fanout_threshold,
            "batch": settings.fanout_batch,
            "cap": CAP,
            "prepare_s": round(prepared, 2),
            "trials": [{**r, "per_s": round(r["per_s"])} for r in runs],
            "entries_per_s": round(median),
            "raw_trials": [{**r, "per_s": round(r["per_s"])} for r in raw],
            "raw_entries_per_s": round(raw_median),
            "x_raw": round(median / raw_median, 3) if raw_median else None,
        }
    finally:
        keys = [key async for key in redis.scan_iter(match=f"{prefix}*", count=1000)]
        for start in range(0, len(keys), 1000):
            await redis.delete(*keys[start : start + 1000])
        await container.close()
