"""Queries on webhook subscriptions and deliveries."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Select, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from tidings.core.db import insert_ignore
from tidings.webhooks.models import DeliveryStatus, WebhookDelivery, WebhookSubscription


async def get_subscription(
    session: AsyncSession, subscription_id: int, *, for_update: bool = False
) -> WebhookSubscription | None:
    return await session.get(
        WebhookSubscription,
        subscription_id,
        with_for_update={"key_share": True} if for_update else None,
    )


async def page_subscriptions(
    session: AsyncSession, limit: int, before_id: int | None
) -> list[WebhookSubscription]:
    stmt = select(WebhookSubscription).order_by(WebhookSubscription.id.desc()).limit(limit + 1)
    if before_id is not None:
        stmt = stmt.where(WebhookSubscription.id < before_id)
    return list((await session.execute(stmt)).scalars())


async def enabled_subscriptions(session: AsyncSession) -> list[WebhookSubscription]:
    stmt = select(WebhookSubscription).where(WebhookSubscription.enabled.is_(True))
    return list((await session.execute(stmt)).scalars())


async def add_delivery(session: AsyncSession, values: dict[str, Any]) -> bool:
    """Insert a delivery unless this subscription already has one for this event."""
    return await insert_ignore(session, WebhookDelivery, values, ["subscription_id", "event_id"])


async def get_delivery(
    session: AsyncSession, delivery_id: int, *, for_update: bool = False
) -> WebhookDelivery | None:
    return await session.get(
        WebhookDelivery, delivery_id, with_for_update={"key_share": True} if for_update else None
    )


async def page_deliveries(
    session: AsyncSession,
    subscription_id: int,
    limit: int,
    before_id: int | None,
    status: DeliveryStatus | None = None,
) -> list[WebhookDelivery]:
    stmt = (
        select(WebhookDelivery)
        .where(WebhookDelivery.subscription_id == subscription_id)
        .order_by(WebhookDelivery.id.desc())
        .limit(limit + 1)
    )
    if before_id is not None:
        stmt = stmt.where(WebhookDelivery.id < before_id)
    if status is not None:
        stmt = stmt.where(WebhookDelivery.status == status.value)
    return list((await session.execute(stmt)).scalars())


def _due(now: datetime) -> Select[WebhookDelivery, WebhookSubscription]:
    """Due deliveries of enabled subscriptions whose circuit is closed (or half-open)."""
    return (
        select(WebhookDelivery, WebhookSubscription)
        .join(WebhookSubscription, WebhookSubscription.id == WebhookDelivery.subscription_id)
        .where(WebhookDelivery.status == DeliveryStatus.PENDING.value)
        .where(WebhookDelivery.next_attempt_at <= now)
        .where(WebhookSubscription.enabled.is_(True))
        .where(
            or_(
                WebhookSubscription.circuit_open_until.is_(None),
                WebhookSubscription.circuit_open_until <= now,
            )
        )
    )


async def any_due(session: AsyncSession, now: datetime) -> bool:
    probe = _due(now).with_only_columns(WebhookDelivery.id).limit(1)
    return (await session.execute(probe)).first() is not None


async def claim_due(
    session: AsyncSession, now: datetime, limit: int, *, skip_locked: bool
) -> list[tuple[WebhookDelivery, WebhookSubscription]]:
    """Oldest due first; on PostgreSQL, rows another dispatcher holds are skipped."""
    stmt = _due(now).order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id).limit(limit)
    if skip_locked:
        stmt = stmt.with_for_update(skip_locked=True, of=WebhookDelivery)
    rows = (await session.execute(stmt)).all()
    return [(row[0], row[1]) for row in rows]
