"""Waiting for a consumer to apply every event it takes (so that the absence of an effect means
it was never produced, not that it is late)."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import and_, exists, func, select

from tests.support.waiting import eventually
from tidings.core.container import Container
from tidings.events.models import OutboxMessage, ProcessedEvent


async def applied(
    container: Container, consumer: str, event_types: Iterable[str], within: float = 10.0
) -> None:
    """Wait until ``consumer`` has applied every outbox event of ``event_types``."""
    types = sorted(set(event_types))

    async def drained() -> bool:
        done = exists().where(
            and_(ProcessedEvent.event_id == OutboxMessage.id, ProcessedEvent.consumer == consumer)
        )
        stmt = (
            select(func.count())
            .select_from(OutboxMessage)
            .where(OutboxMessage.event_type.in_(types), ~done)
        )
        async with container.db.unit_of_work(write=False) as session:
            return (await session.execute(stmt)).scalar_one() == 0

    await eventually(drained, within=within)
