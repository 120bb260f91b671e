"""Applying one event for one consumer: idempotent, retried with backoff, dead-lettered."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from typing import Any

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from tidings.core.db import Database, insert_ignore, utcnow
from tidings.events.consumers import ConsumerRegistry, Envelope
from tidings.events.models import DeadLetter, OutboxMessage, ProcessedEvent

log = structlog.get_logger("tidings.events")


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5
    base_delay: float = 0.2
    max_delay: float = 10.0

    def delay(self, attempt: int) -> float:
        """Exponential backoff with full jitter."""
        ceiling = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
        return random.uniform(ceiling / 2, ceiling)  # noqa: S311 - jitter, not security


async def apply_once(
    db: Database, registry: ConsumerRegistry, consumer_name: str, event_id: int, context: Any
) -> bool:
    """Apply the event in one transaction; False when it was already applied (or unknown)."""
    consumer = registry.get(consumer_name)
    if consumer is None:
        log.error("unknown_consumer", consumer=consumer_name, event_id=event_id)
        return False
    async with db.unit_of_work(write=True) as session:
        marker = {"consumer": consumer_name, "event_id": event_id}
        if not await insert_ignore(session, ProcessedEvent, marker, ["consumer", "event_id"]):
            return False
        row = await session.get(OutboxMessage, event_id)
        if row is None:
            return False
        await consumer.handler(session, Envelope.of(row), context)
        expected = {c.name for c in registry.for_event(row.event_type)}
        done = {c for _, c in await consumers_done(session, [event_id])}
        if expected <= done | {consumer_name}:
            row.published_at = utcnow()  # every consumer has it: no redelivery needed
    return True


async def consumers_done(session: AsyncSession, ids: list[int]) -> set[tuple[int, str]]:
    """(event id, consumer) pairs applied or dead-lettered (and not sent back for replay)."""
    processed = await session.execute(
        select(ProcessedEvent.event_id, ProcessedEvent.consumer).where(
            ProcessedEvent.event_id.in_(ids)
        )
    )
    dead = await session.execute(
        select(DeadLetter.event_id, DeadLetter.consumer).where(
            DeadLetter.event_id.in_(ids), DeadLetter.replayed_at.is_(None)
        )
    )
    return {(e, c) for e, c in processed.all()} | {(e, c) for e, c in dead.all()}


async def deliver(
    db: Database,
    registry: ConsumerRegistry,
    consumer_name: str,
    event_id: int,
    context: Any,
    policy: RetryPolicy,
) -> None:
    """Run a consumer until it succeeds or the attempts run out; then dead-letter the event."""
    last_error = ""
    for attempt in range(1, policy.max_attempts + 1):
        try:
            await apply_once(db, registry, consumer_name, event_id, context)
            return
        except Exception as exc:
            last_error = f"{type(exc).__name__}: {exc}"
        log.warning(
            "consumer_failed",
            consumer=consumer_name,
            event_id=event_id,
            attempt=attempt,
            error=last_error,
        )
        if attempt < policy.max_attempts:
            await asyncio.sleep(policy.delay(attempt))
    await _dead_letter(db, consumer_name, event_id, last_error, policy.max_attempts)


async def _dead_letter(
    db: Database, consumer_name: str, event_id: int, error: str, attempts: int
) -> None:
    async with db.unit_of_work(write=True) as session:
        row = await session.get(OutboxMessage, event_id)
        session.add(
            DeadLetter(
                event_id=event_id,
                consumer=consumer_name,
                event_type=row.event_type if row else "unknown",
                error=error[:4000],
                attempts=attempts,
            )
        )
    log.error("event_dead_lettered", consumer=consumer_name, event_id=event_id, error=error)
