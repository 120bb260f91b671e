"""Queueing a message: a row in the caller's transaction (sent after commit by the mail loop,
:mod:`tidings.mail.delivery`), so a rolled-back request sends nothing and a committed one is
sent even if the process stops right after. Nothing here commits."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from tidings.core.db import utcnow
from tidings.mail.models import OutgoingMail
from tidings.settings import Settings


def mail_enabled(settings: Settings) -> bool:
    return settings.effective_mail_backend != "disabled"


def queue_mail(
    session: AsyncSession,
    to_address: str,
    subject: str,
    body: str = "",
    *,
    kind: str = "message",
    expires_at: datetime | None = None,
) -> None:
    """A message to send after commit; ``kind`` other than ``message`` is rendered at sending
    time (``body`` is then empty); not sent by ``expires_at``, it is given up."""
    session.add(
        OutgoingMail(
            kind=kind,
            to_address=to_address,
            subject=subject,
            body=body,
            next_attempt_at=utcnow(),
            expires_at=expires_at,
        )
    )


def tell_holder(
    session: AsyncSession, settings: Settings, address: str, subject: str, what: str, check: str
) -> None:
    """Mail an account's address that the way into it changed (ASVS 6.3.7), with what to do
    if it was not them (``check``: what to look at once signed in); nothing without mail."""
    if not mail_enabled(settings):
        return
    queue_mail(
        session,
        address,
        subject,
        f"{what}\n\nIf it was not you, sign in, {check} and change your password; if you "
        "cannot sign in, reset your password.\n",
    )
