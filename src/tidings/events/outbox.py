"""Write domain events to the outbox, inside the caller's transaction."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from tidings.core.tracing import current_traceparent
from tidings.events.domain import DomainEvent
from tidings.events.models import OutboxMessage


def record(session: AsyncSession, event: DomainEvent) -> None:
    """Stage an event; it is committed (or rolled back) with the change it describes."""
    session.info["outbox"] = True  # the unit of work wakes the relay after commit
    session.add(
        OutboxMessage(
            event_type=event.event_type,
            aggregate_id=event.aggregate_id,
            actor_id=event.actor_id,
            payload=event.payload(),
            trace_parent=current_traceparent(),
        )
    )
