"""Record audit events in the caller's transaction, and verify the hash chain.

Each event stores ``hash = sha256(prev_hash || canonical(event))``. Appends are serialised (a
transaction-scoped advisory lock on PostgreSQL; SQLite serialises writers already), so the chain
has one order: ``seq``.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

import orjson
import structlog
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from tidings.audit.models import AuditEvent
from tidings.auth.providers.crypto import derive_key
from tidings.core.db import utcnow
from tidings.core.requestid import current_client_ip, current_request_id

GENESIS = "0" * 64
_ADVISORY_LOCK_KEY = 0x7A1D1765  # arbitrary, constant: "the audit chain"
log = structlog.get_logger("tidings.audit")

LOGIN_DIGEST_PURPOSE = "tidings audit login digest"


def login_digest(secret_key: bytes, login: str) -> str:
    """What the audit trail keeps of a sign-in name that no account has: a keyed digest
    (HMAC-SHA256 under a key derived from ``TIDINGS_SECRET_KEY``, 128 bits), never the text.
    People type their password into the name field; the trail is append-only and kept for
    good, so the text must not go in. The same name always gives the same digest, so repeated
    attempts at one name can be found (``GET /api/v1/admin/audit-events?login=``)."""
    key = derive_key(secret_key, LOGIN_DIGEST_PURPOSE)
    return hmac.new(key, login.strip().lower().encode(), hashlib.sha256).hexdigest()[:32]


class AuditAction(StrEnum):
    LOGIN = "auth:login"
    LOGIN_FAILED = "auth:login_failed"
    LOGOUT = "auth:logout"
    SESSION_ENDED = "auth:session_ended"
    REAUTH_FAILED = "auth:reauth_failed"
    REAUTHENTICATED = "auth:reauthenticated"  # through a sign-in provider
    MFA_FAILED = "auth:mfa_failed"
    MFA_RECOVERY_USED = "auth:mfa_recovery_code_used"
    MFA_ENABLED = "account:mfa_enabled"
    MFA_DISABLED = "account:mfa_disabled"
    MFA_CODES_REPLACED = "account:mfa_recovery_codes_replaced"
    REFRESH_REUSE = "auth:refresh_reuse_detected"
    PASSWORD_CHANGED = "account:password_changed"  # noqa: S105 (an action name)
    ACCOUNT_REGISTERED = "account:registered"
    ADMIN_CREATED = "account:admin_created"
    ROLE_CHANGED = "account:role_changed"
    SUSPENDED = "account:suspended"
    UNSUSPENDED = "account:unsuspended"
    ACCOUNT_DELETED = "account:deleted"
    ACCOUNT_ERASED = "account:erased"
    PASSWORD_RESET_REQUESTED = "account:password_reset_requested"  # noqa: S105 (an action name)
    PASSWORD_RESET = "account:password_reset"  # noqa: S105 (an action name)
    EMAIL_VERIFIED = "account:email_verified"
    EMAIL_CHANGE_REQUESTED = "account:email_change_requested"
    EMAIL_CHANGED = "account:email_changed"
    POST_MODERATED = "post:deleted_by_moderator"
    COMMENT_MODERATED = "comment:deleted_by_moderator"
    WEBHOOK_CREATED = "webhook:created"
    WEBHOOK_UPDATED = "webhook:updated"
    WEBHOOK_DELETED = "webhook:deleted"
    WEBHOOK_DISABLED = "webhook:auto_disabled"
    WEBHOOK_SECRET_ROTATED = "webhook:secret_rotated"  # noqa: S105 (an action name)
    IDENTITY_LOGIN = "identity:login"
    LOGIN_CODE_REUSE = "identity:login_code_reuse_detected"
    IDENTITY_LINKED = "identity:linked"
    IDENTITY_UNLINKED = "identity:unlinked"
    DEAD_LETTER_REPLAYED = "events:dead_letter_replayed"
    REPORT_RESOLVED = "report:resolved"
    REPORT_DISMISSED = "report:dismissed"


def _canonical(event: AuditEvent) -> bytes:
    occurred: datetime = event.occurred_at
    return orjson.dumps(
        {
            "seq": event.seq,
            "occurred_at": occurred.isoformat(),
            "actor_id": event.actor_id,
            "action": event.action,
            "target_type": event.target_type,
            "target_id": event.target_id,
            "request_id": event.request_id,
            "ip": event.ip,
            "details": event.details,
        },
        option=orjson.OPT_SORT_KEYS,
    )


def chain_hash(prev_hash: str, event: AuditEvent) -> str:
    return hashlib.sha256(prev_hash.encode() + b"|" + _canonical(event)).hexdigest()


async def record_audit(
    session: AsyncSession,
    action: AuditAction,
    *,
    actor_id: int | None = None,
    target_type: str | None = None,
    target_id: int | str | None = None,
    **details: Any,
) -> AuditEvent:
    """Append one event to the chain, in the caller's transaction."""
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _ADVISORY_LOCK_KEY})
    last = (
        await session.execute(
            select(AuditEvent.seq, AuditEvent.hash).order_by(AuditEvent.seq.desc()).limit(1)
        )
    ).first()
    seq, prev_hash = (last[0] + 1, last[1]) if last else (1, GENESIS)
    event = AuditEvent(
        seq=seq,
        occurred_at=utcnow().replace(microsecond=utcnow().microsecond // 1000 * 1000),
        actor_id=actor_id,
        action=action.value,
        target_type=target_type,
        target_id=str(target_id) if target_id is not None else None,
        request_id=current_request_id(),
        ip=current_client_ip(),
        details={k: v for k, v in details.items() if v is not None},
        prev_hash=prev_hash,
    )
    event.hash = chain_hash(prev_hash, event)
    session.add(event)
    await session.flush()
    log.info(action.value, actor_id=actor_id, target_type=target_type, target_id=event.target_id)
    return event


@dataclass(frozen=True)
class ChainReport:
    checked: int
    broken_seq: int | None = None
    reason: str | None = None

    @property
    def ok(self) -> bool:
        return self.broken_seq is None


async def verify_chain(session: AsyncSession, batch: int = 1000) -> ChainReport:
    """Walk the chain in ``seq`` order; report the first row whose link or hash is wrong."""
    prev_hash, expected_seq, checked = GENESIS, 1, 0
    while True:
        rows = (
            (
                await session.execute(
                    select(AuditEvent)
                    .where(AuditEvent.seq >= expected_seq)
                    .order_by(AuditEvent.seq)
                    .limit(batch)
                )
            )
            .scalars()
            .all()
        )
        if not rows:
            return ChainReport(checked=checked)
        for event in rows:
            if event.seq != expected_seq:
                return ChainReport(checked, expected_seq, "missing row (deleted?)")
            if event.prev_hash != prev_hash:
                return ChainReport(checked, event.seq, "prev_hash does not match the row before")
            if chain_hash(prev_hash, event) != event.hash:
                return ChainReport(checked, event.seq, "content does not match its hash (edited?)")
            prev_hash, expected_seq, checked = event.hash, expected_seq + 1, checked + 1
