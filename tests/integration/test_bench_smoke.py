"""``tidings bench seed --scale small`` and a very short ``bench run``, for correctness only:
the seed is idempotent, every request of the mix succeeds, the results are written. No timing
is asserted. PostgreSQL and Redis."""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from redis.asyncio import Redis

from tests.conftest import make_settings
from tests.support.databases import PostgresTemplates, pg_url
from tidings.bench.cli import build_timelines
from tidings.bench.run import RunConfig, asyncpg_dsn, run_benchmark, write_results
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
        tmp_path / "data", pg_url(name), feed_store="redis", feed_key_prefix=prefix
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

    config = RunConfig(concurrency=4, duration=2.0, baseline_duration=1.0, workers=1)
    report = await run_benchmark(bench_settings, config)
    assert report["errors"] == 0, report["error_samples"]
    assert {"json", "pk", "feed", "timeline"} <= set(report["endpoints"])
    path = write_results(report, tmp_path / "results")
    assert json.loads(path.read_text())["endpoints"]["feed"]["requests"] > 0
    assert (tmp_path / "results" / "latest.md").read_text().startswith("# Benchmark")
