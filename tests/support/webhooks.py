"""A webhook world for the delivery tests: an admin, a fake clock, a dispatcher and a sender
on real local receivers (tests/support/webhook_receiver.py), and the settings they need."""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from tests.conftest import make_settings
from tidings.accounts.schemas import RegisterRequest
from tidings.accounts.service import create_admin
from tidings.auth.policy import Principal, Role
from tidings.core.container import Container
from tidings.core.db import utcnow
from tidings.events import domain
from tidings.events.consumers import ConsumerRegistry
from tidings.events.delivery import apply_once
from tidings.events.models import OutboxMessage
from tidings.events.outbox import record
from tidings.settings import Settings
from tidings.webhooks import consumers as webhook_consumers
from tidings.webhooks import service
from tidings.webhooks.dispatcher import DispatchPolicy, WebhookDispatcher
from tidings.webhooks.models import WebhookDelivery, WebhookSubscription
from tidings.webhooks.schemas import WebhookCreate
from tidings.webhooks.sender import (
    AddressPolicy,
    Resolver,
    SafeHttpSender,
    SenderLimits,
    system_resolver,
)
from tidings.webhooks.service import WebhookKeys

LOOPBACK = ("127.0.0.1/32",)


def webhook_settings(tmp_path: Path, database_url: str) -> Settings:
    """A test's settings with webhooks to loopback allowed (where the receivers listen)."""
    return make_settings(tmp_path / "data", database_url, webhook_allowed_hosts=list(LOOPBACK))


class FakeClock:
    def __init__(self) -> None:
        self.current = utcnow() + dt.timedelta(seconds=60)  # what tests insert is due

    def __call__(self) -> dt.datetime:
        return self.current

    def advance(self, **delta: float) -> None:
        self.current += dt.timedelta(**delta)


@dataclass
class World:
    container: Container
    admin: Principal
    clock: FakeClock
    dispatcher: WebhookDispatcher
    sender: SafeHttpSender

    @property
    def keys(self) -> WebhookKeys:
        return WebhookKeys.from_settings(self.container.settings, self.container.keys.secret_key)

    async def subscribe(self, url: str, event_types: Sequence[str] = ("*",)) -> tuple[int, str]:
        cmd = WebhookCreate(url=url, event_types=list(event_types))
        async with self.container.db.unit_of_work() as session:
            subscription, secret = await service.create_webhook(session, self.admin, cmd, self.keys)
            return subscription.id, secret

    async def emit(self, event: domain.DomainEvent | None = None) -> int:
        """Commit an event to the outbox and run the webhook consumer on it."""
        async with self.container.db.unit_of_work() as session:
            record(session, event or domain.PostCreated(post_id=7, user_id=self.admin.user_id))
            await session.flush()
            latest = select(OutboxMessage.id).order_by(OutboxMessage.id.desc()).limit(1)
            event_id = int((await session.execute(latest)).scalar_one())
        registry = ConsumerRegistry()
        webhook_consumers.register(registry)
        await apply_once(self.container.db, registry, "webhooks", event_id, self.container)
        return event_id

    async def deliveries(self, subscription_id: int) -> list[WebhookDelivery]:
        async with self.container.db.unit_of_work(write=False) as session:
            stmt = (
                select(WebhookDelivery)
                .where(WebhookDelivery.subscription_id == subscription_id)
                .order_by(WebhookDelivery.id)
            )
            return list((await session.execute(stmt)).scalars())

    async def subscription(self, subscription_id: int) -> WebhookSubscription:
        async with self.container.db.unit_of_work(write=False) as session:
            found = await session.get(WebhookSubscription, subscription_id)
            assert found is not None
            return found

    async def count(self, model: Any, **where: Any) -> int:
        async with self.container.db.unit_of_work(write=False) as session:
            stmt = select(func.count()).select_from(model)
            for name, value in where.items():
                stmt = stmt.where(getattr(model, name) == value)
            return int((await session.execute(stmt)).scalar_one())


@asynccontextmanager
async def world(
    container: Container,
    *,
    allowed: Sequence[str] = LOOPBACK,
    resolver: Resolver = system_resolver,
    limits: SenderLimits | None = None,
    **policy: Any,
) -> AsyncIterator[World]:
    async with container.db.unit_of_work() as session:
        cmd = RegisterRequest(
            username="hookadmin", email="hookadmin@example.com", password="x" * 12
        )
        user = await create_admin(session, container.hasher, cmd)
    admin = Principal(user.id, user.username, Role.ADMIN, session_id=0)
    clock = FakeClock()
    sender = SafeHttpSender(AddressPolicy(allowed), limits, resolver=resolver)
    keys = WebhookKeys.from_settings(container.settings, container.keys.secret_key)
    base = DispatchPolicy.from_settings(container.settings)
    dispatcher = WebhookDispatcher(
        container.db,
        sender,
        keys.cipher,
        replace(base, **policy),
        now=clock,
        rng=random.Random(4),
    )
    try:
        yield World(container, admin, clock, dispatcher, sender)
    finally:
        await sender.aclose()
