"""Webhook use cases: subscriptions, secret rotation, delivery history, redelivery, and the
automatic disabling of endpoints. Services never commit: the unit of work does."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx2
from sqlalchemy.ext.asyncio import AsyncSession

from tidings.audit.service import AuditAction, record_audit
from tidings.auth.policy import Principal
from tidings.core.db import utcnow
from tidings.core.errors import Conflict, FieldError, NotFound, ValidationFailed
from tidings.core.pagination import PageParams, paginate
from tidings.notifications.service import notify_system
from tidings.settings import Settings
from tidings.webhooks import repository as repo
from tidings.webhooks.models import DeliveryStatus, WebhookDelivery, WebhookSubscription
from tidings.webhooks.schemas import WebhookCreate, WebhookUpdate
from tidings.webhooks.sender import AddressPolicy
from tidings.webhooks.signing import SecretCipher, new_secret

TARGET = "webhook"


@dataclass(frozen=True)
class WebhookKeys:
    """What the use cases need from configuration: the cipher, the SSRF policy, the overlap."""

    cipher: SecretCipher
    policy: AddressPolicy
    overlap: timedelta

    @classmethod
    def from_settings(cls, settings: Settings, secret_key: bytes) -> WebhookKeys:
        return cls(
            cipher=SecretCipher.from_settings(settings, secret_key),
            policy=AddressPolicy(settings.webhook_allowed_hosts),
            overlap=timedelta(seconds=settings.webhook_secret_overlap_seconds),
        )


def _check_destination(url: str, policy: AddressPolicy) -> None:
    """Refuse an IP literal the sender would refuse anyway (host names are checked per send)."""
    host = httpx2.URL(url).raw_host.decode("ascii")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return
    refusal = policy.refusal(host, [address])
    if refusal is not None:
        raise ValidationFailed(
            "Webhooks cannot be sent to that address.",
            errors=[FieldError(loc=["body", "url"], msg=refusal)],
        )


async def create_webhook(
    session: AsyncSession, admin: Principal, cmd: WebhookCreate, keys: WebhookKeys
) -> tuple[WebhookSubscription, str]:
    """The new subscription and its secret, which is never shown again."""
    _check_destination(cmd.url, keys.policy)
    secret = new_secret()
    now = utcnow()
    subscription = WebhookSubscription(
        owner_id=admin.user_id,
        url=cmd.url,
        event_types=cmd.event_types,
        description=cmd.description,
        enabled=cmd.enabled,
        disabled_reason=None if cmd.enabled else "created disabled",
        disabled_at=None if cmd.enabled else now,
        secret_encrypted=keys.cipher.encrypt(secret),
        created_at=now,
        updated_at=now,
    )
    session.add(subscription)
    await session.flush()
    await record_audit(
        session,
        AuditAction.WEBHOOK_CREATED,
        actor_id=admin.user_id,
        target_type=TARGET,
        target_id=subscription.id,
        url=subscription.url,
        event_types=subscription.event_types,
        enabled=subscription.enabled,
    )
    return subscription, secret


async def get_webhook(session: AsyncSession, subscription_id: int) -> WebhookSubscription:
    subscription = await repo.get_subscription(session, subscription_id)
    if subscription is None:
        raise NotFound("No such webhook.")
    return subscription


async def list_webhooks(
    session: AsyncSession, page: PageParams
) -> tuple[list[WebhookSubscription], str | None]:
    key = page.key("id")
    rows = await repo.page_subscriptions(session, page.limit, key["id"] if key else None)
    return paginate(rows, page.limit, lambda s: {"id": s.id})


async def update_webhook(
    session: AsyncSession,
    admin: Principal,
    subscription_id: int,
    cmd: WebhookUpdate,
    keys: WebhookKeys,
) -> WebhookSubscription:
    subscription = await get_webhook(session, subscription_id)
    changes = cmd.changes()
    if not changes:
        return subscription
    if "url" in changes:
        _check_destination(str(changes["url"]), keys.policy)
    was_enabled, old_url = subscription.enabled, subscription.url
    for name, value in changes.items():
        setattr(subscription, name, value)
    now = utcnow()
    if subscription.enabled and (not was_enabled or subscription.url != old_url):
        _close_circuit(subscription)  # a fresh start for a re-enabled or moved endpoint
        subscription.disabled_reason = subscription.disabled_at = None
    elif was_enabled and not subscription.enabled:
        subscription.disabled_reason, subscription.disabled_at = "disabled by an admin", now
    subscription.updated_at = now
    await session.flush()
    await record_audit(
        session,
        AuditAction.WEBHOOK_UPDATED,
        actor_id=admin.user_id,
        target_type=TARGET,
        target_id=subscription.id,
        changes=changes,
    )
    return subscription


async def delete_webhook(session: AsyncSession, admin: Principal, subscription_id: int) -> None:
    subscription = await get_webhook(session, subscription_id)
    await record_audit(
        session,
        AuditAction.WEBHOOK_DELETED,
        actor_id=admin.user_id,
        target_type=TARGET,
        target_id=subscription.id,
        url=subscription.url,
    )
    await session.delete(subscription)  # its deliveries go with it (ON DELETE CASCADE)
    await session.flush()


async def rotate_secret(
    session: AsyncSession, admin: Principal, subscription_id: int, keys: WebhookKeys
) -> tuple[WebhookSubscription, str]:
    """A new secret signs from now on; the current one keeps signing during the overlap."""
    subscription = await get_webhook(session, subscription_id)
    secret, now = new_secret(), utcnow()
    if keys.overlap > timedelta(0):
        subscription.previous_secret_encrypted = subscription.secret_encrypted
        subscription.previous_secret_expires_at = now + keys.overlap
    else:
        subscription.previous_secret_encrypted = None
        subscription.previous_secret_expires_at = None
    subscription.secret_encrypted = keys.cipher.encrypt(secret)
    subscription.secret_rotated_at = subscription.updated_at = now
    await session.flush()
    await record_audit(
        session,
        AuditAction.WEBHOOK_SECRET_ROTATED,
        actor_id=admin.user_id,
        target_type=TARGET,
        target_id=subscription.id,
        overlap_seconds=int(keys.overlap.total_seconds()),
    )
    return subscription, secret


def signing_secrets(
    subscription: WebhookSubscription, cipher: SecretCipher, now: datetime
) -> list[str]:
    """The current secret, and the previous one while its overlap lasts."""
    found = [cipher.decrypt(subscription.secret_encrypted)]
    expires = subscription.previous_secret_expires_at
    if subscription.previous_secret_encrypted and expires is not None and expires > now:
        found.append(cipher.decrypt(subscription.previous_secret_encrypted))
    return found


async def list_deliveries(
    session: AsyncSession,
    subscription_id: int,
    page: PageParams,
    status: DeliveryStatus | None = None,
) -> tuple[list[WebhookDelivery], str | None]:
    await get_webhook(session, subscription_id)
    key = page.key("id")
    rows = await repo.page_deliveries(
        session, subscription_id, page.limit, key["id"] if key else None, status
    )
    return paginate(rows, page.limit, lambda d: {"id": d.id})


async def redeliver(
    session: AsyncSession, subscription_id: int, delivery_id: int
) -> WebhookDelivery:
    """Send the delivery again from the start of the retry schedule (same ``webhook-id``)."""
    subscription = await get_webhook(session, subscription_id)
    delivery = await repo.get_delivery(session, delivery_id, for_update=True)
    if delivery is None or delivery.subscription_id != subscription.id:
        raise NotFound("No such delivery for this webhook.")
    if not subscription.enabled:
        raise Conflict("The webhook is disabled; enable it before redelivering.")
    delivery.status = DeliveryStatus.PENDING.value
    delivery.attempts = 0
    delivery.next_attempt_at = utcnow()
    delivery.claim = None  # an attempt in flight no longer owns the row
    delivery.delivered_at = None
    await session.flush()
    return delivery


def _close_circuit(subscription: WebhookSubscription) -> None:
    subscription.consecutive_failures = 0
    subscription.circuit_open_until = None


async def auto_disable(
    session: AsyncSession, subscription: WebhookSubscription, reason: str, now: datetime
) -> None:
    """Stop delivering to an endpoint; record it and tell the owner, in this transaction."""
    subscription.enabled = False
    subscription.disabled_reason = reason[:200]
    subscription.disabled_at = subscription.updated_at = now
    _close_circuit(subscription)
    await record_audit(
        session,
        AuditAction.WEBHOOK_DISABLED,
        target_type=TARGET,
        target_id=subscription.id,
        reason=reason,
        url=subscription.url,
    )
    if subscription.owner_id is not None:
        await notify_system(
            session,
            subscription.owner_id,
            title="A webhook was disabled",
            body=f"Deliveries to {subscription.url} stopped: {reason}. Fix the endpoint, "
            "then enable the webhook again.",
            data={"webhook_id": str(subscription.id), "url": subscription.url, "reason": reason},
        )
