"""Data retention: delete the rows that nothing needs any more, in small bounded batches.

What goes, and what always stays, is written next to each query in
:mod:`tidings.retention.repository` (and in docs/operations.md). Each batch deletes at most
``TIDINGS_RETENTION_BATCH`` rows in a short transaction of its own, so a large table is never
locked for long; a pass makes at most ``TIDINGS_RETENTION_MAX_BATCHES`` batches per table and
leaves the rest to the next pass. Several processes may prune at once: on PostgreSQL they skip
the rows another one holds, on SQLite their transactions take turns; a row is only ever deleted
once, and only if it still qualifies. Like the relay, this module drives its own units of work
(one per batch); the queries it runs never commit.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog

from tidings.core.db import Database, utcnow
from tidings.core.idempotency import TTL as IDEMPOTENCY_TTL
from tidings.core.stopping import stopped_within
from tidings.retention import repository as repo
from tidings.settings import Settings

log = structlog.get_logger("tidings.retention")

FIRST_PASS_AFTER = 60.0  # seconds after start-up (or the interval, if shorter)


@dataclass(frozen=True)
class RetentionPolicy:
    events: timedelta
    webhooks: timedelta
    notifications: timedelta
    idempotency: timedelta
    sessions: timedelta
    batch: int
    max_batches: int

    @classmethod
    def from_settings(cls, settings: Settings) -> RetentionPolicy:
        return cls(
            events=timedelta(days=settings.retention_events_days),
            webhooks=timedelta(days=settings.retention_webhook_days),
            notifications=timedelta(days=settings.retention_notifications_days),
            idempotency=IDEMPOTENCY_TTL,
            # past the last refresh, its refresh token and its access token (which may be
            # set to outlive refresh tokens) have both expired; an hour covers the
            # 5-minute grain of last_used_at
            sessions=timedelta(
                seconds=max(settings.refresh_token_ttl_seconds, settings.access_token_ttl_seconds)
            )
            + timedelta(hours=1),
            batch=settings.retention_batch,
            max_batches=settings.retention_max_batches,
        )

    def cutoffs(self, now: datetime) -> repo.Cutoffs:
        return repo.Cutoffs(
            now=now,
            events=now - self.events,
            webhooks=now - self.webhooks,
            notifications=now - self.notifications,
            idempotency=now - self.idempotency,
            sessions=now - self.sessions,
        )


async def prune(
    db: Database,
    settings: Settings,
    now: datetime | None = None,
    *,
    stop: asyncio.Event | None = None,
) -> dict[str, int]:
    """One pass over every table; returns the rows deleted per table (in ``RULES`` order).

    ``now`` is injectable for tests; ``stop`` ends the pass between two batches.
    """
    policy = RetentionPolicy.from_settings(settings)
    cutoffs = policy.cutoffs(now or utcnow())
    counts: dict[str, int] = {}
    for rule in repo.RULES:
        counts[rule.name] = await _prune_table(db, rule, cutoffs, policy, stop)
    return counts


async def _prune_table(
    db: Database,
    rule: repo.Rule,
    cutoffs: repo.Cutoffs,
    policy: RetentionPolicy,
    stop: asyncio.Event | None,
) -> int:
    total = 0
    for _ in range(policy.max_batches):
        if stop is not None and stop.is_set():
            break
        async with db.unit_of_work(write=True) as session:
            deleted = await repo.delete_batch(session, rule, cutoffs, policy.batch)
        total += deleted
        if deleted < policy.batch:
            break
    return total


async def preview(db: Database, settings: Settings, now: datetime | None = None) -> dict[str, int]:
    """What one pass would delete now, per table (``tidings prune --dry-run``); read-only."""
    policy = RetentionPolicy.from_settings(settings)
    cutoffs = policy.cutoffs(now or utcnow())
    cap = policy.batch * policy.max_batches
    async with db.unit_of_work(write=False) as session:
        return {rule.name: await repo.count(session, rule, cutoffs, cap) for rule in repo.RULES}


async def retention_loop(
    stop: asyncio.Event,
    db: Database,
    settings: Settings,
    *,
    interval: float,
    first_pass_after: float,
) -> None:
    """Prune every ``interval`` seconds until ``stop`` is set (which also cuts a wait short).
    A failed pass (the database away, a lock timeout) is logged and retried at the next one."""
    delay = first_pass_after
    while not await stopped_within(stop, delay):
        delay = interval
        try:
            counts = await prune(db, settings, stop=stop)
        except Exception as exc:
            log.warning("retention_failed", error=f"{type(exc).__name__}: {exc}")
            continue
        log.info("retention_pruned", deleted=sum(counts.values()), **counts)


async def run_retention(stop: asyncio.Event, container: Any) -> None:
    """The background loop registered with the event runtime (``container`` is the app's); it
    runs wherever the relay runs, unless ``TIDINGS_RETENTION_ENABLED=false``."""
    settings: Settings = container.settings
    if not settings.retention_enabled:
        log.info("retention_disabled")
        return
    interval = float(settings.retention_interval_seconds)
    await retention_loop(
        stop,
        container.db,
        settings,
        interval=interval,
        first_pass_after=min(FIRST_PASS_AFTER, interval),
    )
