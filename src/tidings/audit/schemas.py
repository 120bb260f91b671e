"""Audit trail bodies."""

from __future__ import annotations

from typing import Any

from tidings.core.schemas import Id, ResponseModel, Timestamp


class AuditEventOut(ResponseModel):
    seq: int
    occurred_at: Timestamp
    actor_id: Id | None
    action: str
    target_type: str | None
    target_id: str | None
    request_id: str | None
    ip: str | None
    details: dict[str, Any]
    hash: str
