"""Consumers of domain events and the registry that routes events to them."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from tidings.events.models import OutboxMessage


@dataclass(frozen=True)
class Envelope:
    """An outbox row as a consumer sees it."""

    id: int
    event_type: str
    aggregate_id: int
    actor_id: int | None
    payload: dict[str, Any]
    created_at: datetime

    @classmethod
    def of(cls, row: OutboxMessage) -> Envelope:
        return cls(
            row.id,
            row.event_type,
            row.aggregate_id,
            row.actor_id,
            dict(row.payload),
            row.created_at,
        )

    def int_field(self, name: str) -> int | None:
        value = self.payload.get(name)
        return int(value) if value not in (None, "") else None


class RetryLater(Exception):
    """Raised by a handler that cannot apply the event now through no fault of the event (a
    dependency is down): the delivery is neither retried in place nor dead-lettered, and the
    relay publishes the event again after ``TIDINGS_RELAY_REDELIVERY_SECONDS``."""


# A handler applies one event inside the unit of work it is given; it must not commit.
Handler = Callable[[AsyncSession, Envelope, Any], Awaitable[None]]


@dataclass(frozen=True)
class Consumer:
    name: str
    event_types: frozenset[str]
    handler: Handler


# A background loop (e.g. the webhook dispatcher): runs until the event is set.
Loop = Callable[[asyncio.Event, Any], Coroutine[Any, Any, None]]


@dataclass
class ConsumerRegistry:
    consumers: dict[str, Consumer] = field(default_factory=dict)
    loops: dict[str, Loop] = field(default_factory=dict)

    def add_loop(self, name: str, loop: Loop) -> None:
        """A loop that runs wherever the relay runs (``tidings worker``, or the embedded API)."""
        if name in self.loops:
            raise ValueError(f"loop {name!r} registered twice")
        self.loops[name] = loop

    def add(self, name: str, event_types: Iterable[str], handler: Handler) -> None:
        if name in self.consumers:
            raise ValueError(f"consumer {name!r} registered twice")
        self.consumers[name] = Consumer(name, frozenset(event_types), handler)

    def for_event(self, event_type: str) -> list[Consumer]:
        return [c for c in self.consumers.values() if event_type in c.event_types]

    def get(self, name: str) -> Consumer | None:
        return self.consumers.get(name)
