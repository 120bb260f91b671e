"""The outbox relay: publishes committed events to the queue, at least once.

An outbox row stays pending until every consumer has applied it (or dead-lettered it). The
relay publishes the consumers still missing, then pushes ``next_attempt_at`` ahead by the
redelivery timeout; if a broker loses the message (restart, crash before ack), the row comes
due again and is republished. Consumers are idempotent, so duplicates are harmless. Rows are
claimed with ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so several relays can run side by side.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

import structlog
from sqlalchemy import Select, or_, select

from tidings.core.db import Database, utcnow
from tidings.core.metrics import bump, metrics
from tidings.events.consumers import ConsumerRegistry
from tidings.events.delivery import consumers_done
from tidings.events.models import OutboxMessage

log = structlog.get_logger("tidings.relay")

# publish(consumer_name, event_id): returns once the broker has accepted the message.
Publish = Callable[[str, int], Awaitable[None]]


class OutboxRelay:
    def __init__(
        self,
        db: Database,
        registry: ConsumerRegistry,
        publish: Publish,
        *,
        batch_size: int = 200,
        redelivery_after: timedelta = timedelta(seconds=30),
    ) -> None:
        self.db = db
        self.registry = registry
        self.publish = publish
        self.batch_size = batch_size
        self.redelivery_after = redelivery_after
        self.wake = asyncio.Event()

    @staticmethod
    def _due(now: datetime) -> Select[OutboxMessage]:
        return (
            select(OutboxMessage)
            .where(OutboxMessage.published_at.is_(None))
            .where(
                or_(OutboxMessage.next_attempt_at.is_(None), OutboxMessage.next_attempt_at <= now)
            )
            .order_by(OutboxMessage.id)
        )

    async def run_once(self) -> int:
        """Publish one batch of due events; returns how many messages went to the broker."""
        now = utcnow()
        async with self.db.unit_of_work(write=False) as session:  # a cheap look, no write lock
            probe = self._due(now).with_only_columns(OutboxMessage.id).limit(1)
            if (await session.execute(probe)).first() is None:
                return 0
        published = 0
        async with self.db.unit_of_work(write=True) as session:
            stmt = self._due(now).limit(self.batch_size)
            if not self.db.is_sqlite:
                stmt = stmt.with_for_update(skip_locked=True)
            rows = list((await session.execute(stmt)).scalars())
            done = await consumers_done(session, [r.id for r in rows]) if rows else set()
            for row in rows:
                missing = [
                    c.name
                    for c in self.registry.for_event(row.event_type)
                    if (row.id, c.name) not in done
                ]
                if not missing:
                    row.published_at = now
                    continue
                for name in missing:
                    await self.publish(name, row.id)  # raises if the broker refuses
                    published += 1
                    bump(metrics().events_published)
                row.attempts += 1
                row.next_attempt_at = now + self.redelivery_after
        return published

    async def run(self, stop: asyncio.Event, poll_interval: float = 0.5) -> None:
        """Loop until ``stop`` is set; a wake-up (after a commit with events) skips the wait."""
        while not stop.is_set():
            # Cleared before the pass, not after it: a wake-up that arrives while the pass
            # runs (an event committed after its look at the outbox) is kept, and the wait
            # below returns at once instead of sleeping through it.
            self.wake.clear()
            try:
                busy = await self.run_once()
            except Exception as exc:
                log.warning("relay_failed", error=f"{type(exc).__name__}: {exc}")
                busy = 0
            if busy:
                continue
            waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self.wake.wait())]
            try:
                await asyncio.wait(
                    waiters, timeout=poll_interval, return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                for waiter in waiters:
                    waiter.cancel()
