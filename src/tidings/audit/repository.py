"""Queries on the audit trail (reads only: writes go through the chain in service.py)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from tidings.audit.models import AuditEvent


@dataclass(frozen=True)
class AuditFilter:
    actor_id: int | None = None
    action: str | None = None
    target_type: str | None = None
    target_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    login_digest: str | None = None  # failed sign-ins with a name no account has


async def page_events(
    session: AsyncSession, flt: AuditFilter, limit: int, before_seq: int | None
) -> list[AuditEvent]:
    stmt = select(AuditEvent).order_by(AuditEvent.seq.desc()).limit(limit + 1)
    if before_seq is not None:
        stmt = stmt.where(AuditEvent.seq < before_seq)
    if flt.actor_id is not None:
        stmt = stmt.where(AuditEvent.actor_id == flt.actor_id)
    if flt.action is not None:
        stmt = stmt.where(AuditEvent.action == flt.action)
    if flt.target_type is not None:
        stmt = stmt.where(AuditEvent.target_type == flt.target_type)
    if flt.target_id is not None:
        stmt = stmt.where(AuditEvent.target_id == flt.target_id)
    if flt.since is not None:
        stmt = stmt.where(AuditEvent.occurred_at >= flt.since)
    if flt.until is not None:
        stmt = stmt.where(AuditEvent.occurred_at < flt.until)
    if flt.login_digest is not None:
        stmt = stmt.where(
            AuditEvent.action == "auth:login_failed",
            AuditEvent.details["login_digest"].as_string() == flt.login_digest,
        )
    return list((await session.execute(stmt)).scalars())
