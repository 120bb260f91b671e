"""Queueing a message: a row in the caller's transaction (sent after commit by the mail loop,
:mod:`tidings.mail.delivery`), so a rolled-back request sends nothing and a committed one is
sent even if the process stops right after. Nothing here commits."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from tidings.core.db import utcnow
from tidings.mail.models import OutgoingMail


def queue_mail(session: AsyncSession, to_address: str, subject: str, body: str) -> None:
    session.add(
        OutgoingMail(to_address=to_address, subject=subject, body=body, next_attempt_at=utcnow())
    )
