"""The transactional outbox and stored idempotent responses."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from tidings.core.db import Base, utcnow
from tidings.core.ids import new_id


class OutboxMessage(Base):
    """A domain event written in the same transaction as the change it describes; a relay
    publishes unpublished rows after commit (the async issue)."""

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_published_at_id", "published_at", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True, default=new_id, autoincrement=False)
    event_type: Mapped[str] = mapped_column(String(64))
    aggregate_id: Mapped[int] = mapped_column(BigInteger)
    actor_id: Mapped[int | None] = mapped_column(BigInteger, default=None)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    published_at: Mapped[datetime | None] = mapped_column(default=None)  # every consumer done
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    next_attempt_at: Mapped[datetime | None] = mapped_column(default=None)
    # W3C traceparent of the request that wrote it (TIDINGS_TRACING): its consumers' spans
    # continue that trace
    trace_parent: Mapped[str | None] = mapped_column(String(64), default=None)


class ProcessedEvent(Base):
    """An event a consumer has applied; inserted in the same transaction as the side effect,
    so a redelivered event is skipped (exactly-once effect over at-least-once delivery)."""

    __tablename__ = "processed_events"
    __table_args__ = (Index("ix_processed_events_processed_at", "processed_at"),)  # retention

    consumer: Mapped[str] = mapped_column(String(64), primary_key=True)
    event_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    processed_at: Mapped[datetime] = mapped_column(default=utcnow)


class DeadLetter(Base):
    """An event a consumer failed on after every retry; an admin can list and replay it."""

    __tablename__ = "dead_letters"
    __table_args__ = (
        Index("ix_dead_letters_event_id", "event_id"),
        Index("ix_dead_letters_replayed_at", "replayed_at"),  # retention
    )

    id: Mapped[int] = mapped_column(primary_key=True, default=new_id, autoincrement=False)
    event_id: Mapped[int] = mapped_column(BigInteger)
    consumer: Mapped[str] = mapped_column(String(64))
    event_type: Mapped[str] = mapped_column(String(64))
    error: Mapped[str] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    replayed_at: Mapped[datetime | None] = mapped_column(default=None)


class IdempotencyRecord(Base):
    """The first response to a create carrying ``Idempotency-Key``, replayed for 24 hours."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (Index("ix_idempotency_keys_created_at", "created_at"),)

    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int | None] = mapped_column(Integer, default=None)
    response_body: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
