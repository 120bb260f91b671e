"""The delete queries of data retention: which rows of each table may go, and one bounded batch.

Every rule is a ``SELECT`` of the primary keys of the rows it may delete (index-backed, oldest
first); a batch deletes the first ``n`` of them by row address (see :func:`delete_batch`), with
``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so concurrent pruners split the rows instead of
queueing on them, and a row another transaction is changing right now is left for the next
run. PostgreSQL re-checks the conditions against the latest version of a row when it locks it,
so a row that stopped qualifying in the meantime (its event un-published by a dead-letter
replay, say) is not deleted. Nothing here commits.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeAlias

from sqlalchemy import (
    ColumnElement,
    Exists,
    Select,
    and_,
    any_,
    delete,
    exists,
    func,
    literal_column,
    or_,
    select,
)
from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncSession

from tidings.auth.models import AuthSession, RefreshToken
from tidings.core.db import Base
from tidings.events.models import DeadLetter, IdempotencyRecord, OutboxMessage, ProcessedEvent
from tidings.mail.models import OutgoingMail
from tidings.notifications.models import NotificationGroup
from tidings.recovery.models import EmailToken
from tidings.webhooks.models import DeliveryStatus, WebhookDelivery

Keys: TypeAlias = Select[*tuple[Any, ...]]  # the primary keys of rows that may go


@dataclass(frozen=True)
class Cutoffs:
    """The moments before which each kind of row is old enough to go."""

    now: datetime
    events: datetime  # published outbox rows, consumer markers, replayed dead letters
    webhooks: datetime  # finished webhook deliveries (by their last attempt)
    notifications: datetime  # read notifications (by when they were read)
    idempotency: datetime  # stored idempotent responses (by when they were stored)
    sessions: datetime  # sessions not used since: every refresh token they had has expired


@dataclass(frozen=True)
class Rule:
    """One table: its model, its primary-key columns, and the rows it may delete."""

    name: str
    model: type[Base]
    keys: tuple[Any, ...]
    candidates: Callable[[Cutoffs], Keys]


def _pending_dead_letter(event_id: Any) -> Exists:
    """A dead letter of this event not replayed yet: an admin may still send it back, which
    makes the outbox row unpublished again (``events/api.py``)."""
    return exists().where(DeadLetter.event_id == event_id, DeadLetter.replayed_at.is_(None))


def published_outbox(c: Cutoffs) -> Keys:
    """Outbox rows published (every consumer done) before the events cutoff.

    Never an unpublished row: the relay still has to deliver it. Never a row with a dead letter
    not replayed yet: replaying it un-publishes the row, and the relay needs the row (and the
    other consumers' markers) to redeliver to that one consumer only.
    """
    return (
        select(OutboxMessage.id)
        .where(OutboxMessage.published_at < c.events)
        .where(~_pending_dead_letter(OutboxMessage.id))
        .order_by(OutboxMessage.published_at)
    )


def finished_markers(c: Cutoffs) -> Keys:
    """Consumer markers (``processed_events``) older than the events cutoff whose event can no
    longer be delivered again.

    A marker is what makes a redelivery a no-op, and redelivery only happens while the outbox
    row is unpublished (or is made so by replaying a dead letter). So a marker goes only when
    its outbox row is gone, or is published before the cutoff with no dead letter left to
    replay; while the row is pending, every marker of it stays.
    """
    still_deliverable = exists().where(
        OutboxMessage.id == ProcessedEvent.event_id,
        or_(
            OutboxMessage.published_at.is_(None),
            OutboxMessage.published_at >= c.events,
            _pending_dead_letter(OutboxMessage.id),
        ),
    )
    return (
        select(ProcessedEvent.consumer, ProcessedEvent.event_id)
        .where(ProcessedEvent.processed_at < c.events)
        .where(~still_deliverable)
        .order_by(ProcessedEvent.processed_at)
    )


def replayed_dead_letters(c: Cutoffs) -> Keys:
    """Dead letters replayed before the events cutoff. One not replayed yet always stays: it is
    an admin's to-do, and it is what counts the consumer as done for its event."""
    return (
        select(DeadLetter.id)
        .where(DeadLetter.replayed_at < c.events)
        .order_by(DeadLetter.replayed_at)
    )


def expired_idempotency_keys(c: Cutoffs) -> Keys:
    """Stored responses past the ``Idempotency-Key`` TTL: a retry would not replay them anyway
    (``core/idempotency.py`` replaces an expired record when its key comes back)."""
    return (
        select(IdempotencyRecord.user_id, IdempotencyRecord.key)
        .where(IdempotencyRecord.created_at < c.idempotency)
        .order_by(IdempotencyRecord.created_at)
    )


FINISHED = (DeliveryStatus.DELIVERED.value, DeliveryStatus.DEAD.value)


def finished_deliveries(c: Cutoffs) -> Keys:
    """Delivered or dead webhook deliveries whose last attempt is older than the webhook
    cutoff. A pending one (waiting, retrying, or held by an open circuit breaker) always stays.
    (No ``ORDER BY``: with two statuses it would sort every match before the limit.)"""
    return (
        select(WebhookDelivery.id)
        .where(WebhookDelivery.status.in_(FINISHED))
        .where(WebhookDelivery.last_attempt_at < c.webhooks)
    )


def expired_refresh_tokens(c: Cutoffs) -> Keys:
    """Refresh tokens past ``expires_at``: they are refused before anything else is looked at.

    A used token is kept until then, however old: presenting a rotated token again is how
    reuse (theft) is detected and the whole family revoked (``auth/service.py``); without the
    row it would only be an unknown token.
    """
    return (
        select(RefreshToken.id)
        .where(RefreshToken.expires_at < c.now)
        .order_by(RefreshToken.expires_at)
    )


def ended_sessions(c: Cutoffs) -> Keys:
    """Sign-in sessions that can never be used again, with every refresh token gone or
    expired (expired ones go with the session, ``ON DELETE CASCADE``, as the rule above allows
    anyway): revoked ones, and ones nobody refreshed for longer than a refresh token lives
    (never signed out, just left). Nothing can refresh them, and their access tokens expired
    long before, so their rows — the address and user agent of a sign-in — are kept no
    longer. A session with a token that has not expired always stays."""
    live_token = exists().where(
        RefreshToken.session_id == AuthSession.id, RefreshToken.expires_at >= c.now
    )
    revoked = and_(AuthSession.revoked_at.is_not(None), AuthSession.revoked_at < c.now)
    return (
        select(AuthSession.id)
        .where(or_(revoked, AuthSession.last_used_at < c.sessions))
        .where(~live_token)
    )


def read_notifications(c: Cutoffs) -> Keys:
    """Notification groups read before the notifications cutoff (their actors go with them,
    ``ON DELETE CASCADE``). An unread group always stays; a read one is closed and never
    changes again."""
    return (
        select(NotificationGroup.id)
        .where(NotificationGroup.read_at < c.notifications)
        .order_by(NotificationGroup.read_at)
    )


def expired_email_tokens(c: Cutoffs) -> Keys:
    """Password-reset and verification tokens past ``expires_at``: refused anyway."""
    return select(EmailToken.id).where(EmailToken.expires_at < c.now)


def failed_mail(c: Cutoffs) -> Keys:
    """Mail given up on (its body already blanked) more than the webhook cutoff ago, by when it
    was queued. Mail still being tried always stays; sent mail is deleted when sent."""
    return select(OutgoingMail.id).where(
        OutgoingMail.next_attempt_at.is_(None), OutgoingMail.created_at < c.webhooks
    )


# In this order: an outbox row goes before its markers, tokens before their sessions.
RULES: tuple[Rule, ...] = (
    Rule("outbox", OutboxMessage, (OutboxMessage.id,), published_outbox),
    Rule(
        "processed_events",
        ProcessedEvent,
        (ProcessedEvent.consumer, ProcessedEvent.event_id),
        finished_markers,
    ),
    Rule("dead_letters", DeadLetter, (DeadLetter.id,), replayed_dead_letters),
    Rule(
        "idempotency_keys",
        IdempotencyRecord,
        (IdempotencyRecord.user_id, IdempotencyRecord.key),
        expired_idempotency_keys,
    ),
    Rule("webhook_deliveries", WebhookDelivery, (WebhookDelivery.id,), finished_deliveries),
    Rule("refresh_tokens", RefreshToken, (RefreshToken.id,), expired_refresh_tokens),
    Rule("auth_sessions", AuthSession, (AuthSession.id,), ended_sessions),
    Rule("notification_groups", NotificationGroup, (NotificationGroup.id,), read_notifications),
    Rule("email_tokens", EmailToken, (EmailToken.id,), expired_email_tokens),
    Rule("outgoing_mail", OutgoingMail, (OutgoingMail.id,), failed_mail),
)


def _row_id(rule: Rule, dialect: str) -> ColumnElement[Any]:
    """The physical row address: ``ctid`` on PostgreSQL, ``rowid`` on SQLite."""
    name = "ctid" if dialect == "postgresql" else "rowid"
    return literal_column(f"{rule.model.__table__.name}.{name}")  # type: ignore[attr-defined]


async def delete_batch(session: AsyncSession, rule: Rule, cutoffs: Cutoffs, limit: int) -> int:
    """Delete at most ``limit`` rows the rule allows; returns how many went.

    The rows are chosen by address, so the outer ``DELETE`` is a TID (rowid) lookup of exactly
    those rows, whatever the planner thinks of the table's size: on PostgreSQL
    ``DELETE ... WHERE ctid = ANY(ARRAY(SELECT ctid ... LIMIT n FOR UPDATE SKIP LOCKED))``
    (the rows are locked by this transaction, so their addresses cannot change before the
    delete), on SQLite ``DELETE ... WHERE rowid IN (SELECT rowid ... LIMIT n)`` (writers are
    serialised).
    """
    dialect = session.get_bind().dialect.name
    row_id = _row_id(rule, dialect)
    chosen = (
        rule.candidates(cutoffs)
        .with_only_columns(row_id, maintain_column_froms=True)
        .limit(limit)
        .correlate(None)
    )
    if dialect == "postgresql":
        chosen = chosen.with_for_update(skip_locked=True, of=rule.model)
        where = row_id == any_(func.array(chosen.scalar_subquery()))
    else:
        where = row_id.in_(chosen)
    stmt = delete(rule.model).where(where).execution_options(synchronize_session=False)
    result = await session.execute(stmt)
    assert isinstance(result, CursorResult)
    return max(result.rowcount, 0)


async def count(session: AsyncSession, rule: Rule, cutoffs: Cutoffs, cap: int) -> int:
    """How many rows the rule allows to delete now, counting no further than ``cap``."""
    chosen = rule.candidates(cutoffs).limit(cap).subquery()
    total = await session.execute(select(func.count()).select_from(chosen))
    return int(total.scalar_one())
