"""The event types a subscription may ask for: every domain event, or ``*`` for all."""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache

from tidings.events.domain import DomainEvent

WILDCARD = "*"


@cache
def event_types() -> frozenset[str]:
    """The ``event_type`` of every concrete domain event (abstract bases keep ``event``)."""
    found: set[str] = set()
    pending: list[type[DomainEvent]] = [DomainEvent]
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        if cls.event_type != DomainEvent.event_type:
            found.add(cls.event_type)
    return frozenset(found)


def wants(subscribed: Iterable[str], event_type: str) -> bool:
    subscribed = list(subscribed)
    return WILDCARD in subscribed or event_type in subscribed
