"""The benchmark's waits between phases look only at what they should: ``settle`` at this
run's feed events (an older event no consumer applied must not hold every run up to its time
limit), and ``outbox_state`` counts the events no relay has picked up. PostgreSQL."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from tests.conftest import make_settings
from tests.support.databases import PostgresTemplates, pg_url
from tidings.bench.run import asyncpg_dsn, outbox_state
from tidings.bench.visibility import settle
from tidings.settings import Settings

pytestmark = pytest.mark.postgres


@pytest.fixture
async def settings(
    tmp_path: Path, postgres_templates: PostgresTemplates
) -> AsyncIterator[Settings]:
    name = await postgres_templates.clone()
    try:
        yield make_settings(tmp_path / "data", pg_url(name))
    finally:
        await postgres_templates.drop_clone(name)


async def _event(dsn: str, event_id: int, *, relayed: bool) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "INSERT INTO outbox (id, event_type, aggregate_id, payload, created_at, "
            "published_at, attempts) VALUES ($1, 'post.created', 1, '{}', now(), "
            "CASE WHEN $2 THEN now() END, CASE WHEN $2 THEN 1 ELSE 0 END)",
            event_id,
            relayed,
        )
    finally:
        await conn.close()


async def test_settle_waits_only_for_this_runs_feed_events(settings: Settings) -> None:
    dsn = asyncpg_dsn(settings.effective_database_url)
    assert await outbox_state(settings) == (0, 0)
    await _event(dsn, 10, relayed=True)  # applied by no feeds consumer: an older run's leftover
    await _event(dsn, 11, relayed=False)
    backlog, last = await outbox_state(settings)
    assert (backlog, last) == (1, 11)

    started = time.monotonic()
    assert await settle(dsn, 0, within=0.6) >= 0.6  # everything counts: the limit is reached
    assert await settle(dsn, last, within=5.0) < 0.5  # this run's events only: none yet
    await _event(dsn, 12, relayed=False)  # one of this run's, not applied: waited for
    assert await settle(dsn, last, within=0.6) >= 0.6
    assert time.monotonic() - started < 5
