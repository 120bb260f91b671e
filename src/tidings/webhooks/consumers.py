"""The webhook consumer: every domain event becomes one delivery per matching subscription."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncSession

from tidings.events.consumers import ConsumerRegistry, Envelope
from tidings.webhooks import repository as repo
from tidings.webhooks.catalog import event_types, wants
from tidings.webhooks.dispatcher import run_dispatcher
from tidings.webhooks.signing import message_id

CONSUMER = "webhooks"
DISPATCHER_LOOP = "webhook-dispatcher"


def rfc3339(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def payload_of(envelope: Envelope) -> str:
    """The Standard Webhooks body: ``{"type", "timestamp", "data"}``, signed byte for byte."""
    body = {
        "type": envelope.event_type,
        "timestamp": rfc3339(envelope.created_at),
        "data": envelope.payload,
    }
    return orjson.dumps(body).decode()


async def fan_out(session: AsyncSession, envelope: Envelope, _context: Any) -> None:
    """One pending delivery per enabled subscription that wants this event (idempotent)."""
    subscriptions = [
        s
        for s in await repo.enabled_subscriptions(session)
        if wants(s.event_types, envelope.event_type)
    ]
    if not subscriptions:
        return
    body = payload_of(envelope)
    for subscription in subscriptions:
        await repo.add_delivery(
            session,
            {
                "subscription_id": subscription.id,
                "event_id": envelope.id,
                "event_type": envelope.event_type,
                "message_id": message_id(envelope.id),
                "payload": body,
            },
        )


def register(registry: ConsumerRegistry) -> None:
    registry.add(CONSUMER, sorted(event_types()), fan_out)
    registry.add_loop(DISPATCHER_LOOP, run_dispatcher)
