"""``tidings bench seed --scale small`` and a very short ``bench run``, for correctness only:
the seed is idempotent, every request of the mix and of each endpoint alone succeeds, every
section of the results is there (pgbench, fan-out, time to visible, targets, plot) and the
results are written. No timing is asserted. PostgreSQL and Redis; wrk when it is on PATH,
else the Python generator."""

from __future__ import annotations

import json
import secrets
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from redis.asyncio import Redis

from tests.conftest import make_settings
from tests.support.databases import PostgresTemplates, pg_url
from tidings.bench.cli import build_timelines
from tidings.bench.report import markdown as report_markdown
from tidings.bench.report import write_results
from tidings.bench.run import RunConfig, asyncpg_dsn, run_benchmark
from tidings.bench.seed import SCALES, seed_database
from tidings.settings import Settings

pytestmark = pytest.mark.postgres


@pytest.fixture
async def bench_settings(
    tmp_path: Path, postgres_templates: PostgresTemplates
) -> AsyncIterator[Settings]:
    name = await postgres_templates.clone()
    prefix = f"test:bench:{secrets.token_hex(6)}:"
    settings = make_settings(
        tmp_path / "data",
        pg_url(name),
        feed_store="redis",
        feed_key_prefix=prefix,
        row_cache="redis",  # as the full runs: the feed's bodies from the row cache
    )
    try:
        yield settings
    finally:
        redis = Redis.from_url(settings.redis_url)
        keys = [key async for key in redis.scan_iter(match=f"{prefix}*", count=1000)]
        if keys:
            await redis.delete(*keys)
        await redis.aclose()
        await postgres_templates.drop_clone(name)


async def test_seed_small_then_a_short_run_has_no_errors(
    bench_settings: Settings, tmp_path: Path
) -> None:
    dsn = asyncpg_dsn(bench_settings.effective_database_url)
    scale = SCALES["small"]
    assert await seed_database(dsn, scale)
    assert await seed_database(dsn, scale) == {}  # idempotent: a second seed does nothing
    conn = await asyncpg.connect(dsn)
    try:
        assert await conn.fetchval("SELECT count(*) FROM users") == scale.users
        drift = await conn.fetchval(
            "SELECT count(*) FROM users u WHERE follower_count <> "
            "(SELECT count(*) FROM follows f WHERE f.followee_id = u.id)"
        )
        assert drift == 0  # counters are exact
    finally:
        await conn.close()
    assert await build_timelines(bench_settings, scale.active) == scale.active

    from tidings.bench.to_sqlite import copy_to_sqlite

    copy = tmp_path / "embedded.db"  # the embedded default on the same seed (--sqlite)
    await copy_to_sqlite(dsn, f"sqlite+aiosqlite:///{copy}")
    config = RunConfig(
        concurrency=(4,),
        duration=2.0,
        baseline_duration=1.0,
        workers=1,
        warmup=0.0,
        sqlite=copy,
        seed=4242,
    )
    report = await run_benchmark(bench_settings, config)
    assert report["errors"] == 0, report["error_samples"]
    assert report["seed"] == 4242
    assert report["outbox_backlog_at_start"] == 0  # the seed leaves no event to relay
    assert "Warning: the outbox held" not in report_markdown(report)
    storage = report["storage"]
    assert storage["database_bytes"] > 0
    assert storage["shared_buffers"]
    assert "Storage: the database is" in report_markdown(report)
    busy = report_markdown({**report, "outbox_backlog_at_start": 51_916})
    assert "Warning: the outbox held 51,916 events no relay had picked up" in busy
    redis = Redis.from_url(bench_settings.redis_url)
    try:  # the run's row cache lived under keys of its own (it started cold)
        run_prefix = f"{bench_settings.cache_key_prefix}bench4242:"
        own = [key async for key in redis.scan_iter(match=f"{run_prefix}*", count=1000)]
        assert own, "no row cache entries under the run's prefix"
        await redis.delete(*own)
    finally:
        await redis.aclose()
    rows = report["levels"]["4"]["rows"]
    measured = {
        "json",
        "pk",
        "feed",
        "timeline",
        "feed (redis)",
        "feed (redis, warm)",
        "feed (pull)",
    }
    measured |= {"timeline (alone)", "like (alone)", "follow (alone)"}
    measured |= {"feed (embedded)", "timeline (embedded)"}
    assert measured <= set(rows), set(rows)
    assert all(row["errors"] == 0 and row["requests"] > 0 for row in rows.values())
    assert report["generator"]["name"] == ("wrk" if shutil.which("wrk") else "python")

    if shutil.which("pgbench"):
        assert report["pgbench"]["tpcb"]["4"]["tps"] > 0
        assert report["pgbench"]["feed_sql"]["4"]["tps"] > 0
        assert rows["feed (pull)"]["x_pgbench"] is not None
        assert rows["like (alone)"]["x_pgbench"] is not None
    else:
        assert "skipped" in report["pgbench"]

    fanout = report["fanout"]
    assert fanout["followers"] > 0
    assert [t["entries"] for t in fanout["trials"]] == [fanout["followers"] + 1] * len(
        fanout["trials"]
    )  # the author's timeline and every follower's
    raw = [t["entries"] for t in fanout["raw_trials"]]  # the baseline wrote every entry too
    assert raw == [fanout["followers"] + 1] * len(fanout["raw_trials"])
    assert fanout["x_raw"] > 0
    redis = Redis.from_url(bench_settings.redis_url)
    try:  # the scratch timelines are gone
        prefix = f"{bench_settings.feed_key_prefix}benchfanout:"
        assert [key async for key in redis.scan_iter(match=f"{prefix}*", count=1000)] == []
    finally:
        await redis.aclose()

    for case in ("most_followed", "near_10k"):
        trials = report["visibility"][case]["trials_s"]
        assert trials, report["visibility"]
        assert None not in trials, report["visibility"]  # every probe post showed up

    statuses = {entry["target"]: entry["status"] for entry in report["targets"]}
    assert statuses["zero errors"] == "met"
    assert statuses["embedded home feed ≥ 1,000 req/s @4"] in ("met", "missed")  # measured
    assert set(statuses.values()) <= {"met", "missed", "not measured"}
    assert len(statuses) >= 14

    path = write_results(report, tmp_path / "results")
    assert json.loads(path.read_text())["levels"]["4"]["rows"]["feed"]["requests"] > 0
    markdown = (tmp_path / "results" / "latest.md").read_text()
    assert markdown.startswith("# Benchmark")
    for section in ("## Targets", "## 4 connections", "## pgbench", "## Fan-out", "## Time to"):
        assert section in markdown
    assert "Embedded default: `" in markdown
    assert (tmp_path / "results" / "latest.png").read_bytes().startswith(b"\x89PNG")


async def test_the_seed_copied_to_sqlite_serves_the_same_feeds(
    bench_settings: Settings, tmp_path: Path
) -> None:
    """``tidings bench to-sqlite``: every seeded row arrives, and the embedded default's pull
    feed on the copy equals PostgreSQL's page for page (the seed's realistic graph: shares,
    followers-only and private posts, many authors per page)."""
    from tidings.auth.policy import Principal, Role
    from tidings.bench.to_sqlite import ORDER, copy_to_sqlite
    from tidings.core.container import Container
    from tidings.core.pagination import PageParams
    from tidings.timelines import service as timelines
    from tidings.timelines.schemas import TimelineFilters

    dsn = asyncpg_dsn(bench_settings.effective_database_url)
    assert await seed_database(dsn, SCALES["small"])
    target = f"sqlite+aiosqlite:///{tmp_path / 'copy.db'}"
    copied = await copy_to_sqlite(dsn, target)
    conn = await asyncpg.connect(dsn)
    try:
        for table in ORDER:
            assert copied[table] == await conn.fetchval(f"SELECT count(*) FROM {table}")
        readers = [
            int(r["user_id"])
            for r in await conn.fetch("SELECT user_id FROM auth_sessions ORDER BY id LIMIT 5")
        ]
    finally:
        await conn.close()

    pg = Container.build(make_settings(tmp_path / "pg", bench_settings.effective_database_url))
    lite = Container.build(make_settings(tmp_path / "lite", target))
    try:
        for reader in readers:
            viewer = Principal(user_id=reader, username="x", role=Role.USER, session_id=0)
            pages = []
            for container in (pg, lite):
                cursor, bodies = None, []
                for _ in range(3):  # three pages deep, following the cursors
                    params = PageParams(limit=20, cursor=cursor)
                    async with container.db.unit_of_work(write=False) as session:
                        posts, cursor = await timelines.home_feed(
                            session, viewer, params, TimelineFilters()
                        )
                    bodies += posts  # as the API writes them (JSON-ready)
                    if cursor is None:
                        break
                pages.append(bodies)
            assert pages[0], reader  # a seeded reader follows twenty accounts
            assert pages[0] == pages[1], reader
    finally:
        await pg.close()
        await lite.close()
