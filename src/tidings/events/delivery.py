"""Applying one event for one consumer: idempotent, retried with backoff, dead-lettered."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from typing import Any

import structlog
from sqlalchemy import BigInteger, bindparam, select, union_all, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import BindParameter

from tidings.core import rawsql
from tidings.core.db import Database, insert_ignore, utcnow
from tidings.core.ids import IdsUnavailable
from tidings.core.metrics import bump, metrics
from tidings.core.tracing import consumer_span
from tidings.events.consumers import ConsumerRegistry, Envelope, RetryLater
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


# The hot statements of every delivery, built once and run on the driver (tidings.core.rawsql):
# through the ORM they were about a fifth of a worker's CPU.
_EVENT = select(
    OutboxMessage.id,
    OutboxMessage.event_type,
    OutboxMessage.aggregate_id,
    OutboxMessage.actor_id,
    OutboxMessage.payload,
    OutboxMessage.created_at,
    OutboxMessage.trace_parent,
).where(OutboxMessage.id == bindparam("event_id", type_=BigInteger))
_LOCK_EVENT = (
    select(OutboxMessage.id)
    .where(OutboxMessage.id == bindparam("event_id", type_=BigInteger))
    .with_for_update()
)
_IDS: BindParameter[list[int]] = bindparam("ids", expanding=True)
_DONE = union_all(
    select(ProcessedEvent.event_id, ProcessedEvent.consumer).where(
        ProcessedEvent.event_id.in_(_IDS)
    ),
    select(DeadLetter.event_id, DeadLetter.consumer).where(
        DeadLetter.event_id.in_(_IDS), DeadLetter.replayed_at.is_(None)
    ),
)


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
        rows = await rawsql.fetch(session, _EVENT, {"event_id": event_id})
        if not rows:
            return False
        ident, event_type, aggregate_id, actor_id, payload, created_at, parent = rows[0]
        envelope = Envelope(ident, event_type, aggregate_id, actor_id, dict(payload), created_at)
        with consumer_span(consumer_name, event_type, ident, parent):
            await consumer.handler(session, envelope, context)
        others = {c.name for c in registry.for_event(event_type)} - {consumer_name}
        if others:
            if not db.is_sqlite:  # (SQLite runs one writer at a time: it has seen them all)
                # Wait here for another consumer of this event that got here first to commit,
                # so the look below sees its marker. Without it two consumers finishing
                # together each saw the other pending, and the row waited for the relay's
                # next look (the redelivery timeout) to be marked published.
                await rawsql.fetch(session, _LOCK_EVENT, {"event_id": event_id})
            done = {c for _, c in await consumers_done(session, [event_id])}
        if not others or others <= done:  # every consumer has it: no redelivery needed
            await session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id == event_id)
                .values(published_at=utcnow())
                .execution_options(synchronize_session=False)
            )
    return True


async def consumers_done(session: AsyncSession, ids: list[int]) -> set[tuple[int, str]]:
    """(event id, consumer) pairs applied or dead-lettered (and not sent back for replay)."""
    return {(int(e), str(c)) for e, c in await rawsql.fetch(session, _DONE, {"ids": ids})}


def _later(exc: BaseException) -> bool:
    """Deferred rather than failed: the handler said so (:class:`RetryLater`), or this process
    may not make ids now (its node id lease is not confirmed), also when that was raised
    inside a statement (a column default)."""
    inner = getattr(exc, "orig", None)
    return any(isinstance(e, RetryLater | IdsUnavailable) for e in (exc, inner))


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
    counted = metrics().event_deliveries
    for attempt in range(1, policy.max_attempts + 1):
        try:
            applied = await apply_once(db, registry, consumer_name, event_id, context)
            bump(counted, consumer_name, "applied" if applied else "already")
            return
        except Exception as exc:
            if _later(exc):  # left for the relay's next publication
                bump(counted, consumer_name, "deferred")
                log.warning(
                    "consumer_deferred", consumer=consumer_name, event_id=event_id, reason=str(exc)
                )
                return
            bump(counted, consumer_name, "failed")
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
    bump(counted, consumer_name, "dead_lettered")


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
