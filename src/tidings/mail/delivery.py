"""Sending queued mail: a loop wherever the relay runs (``tidings worker``, or the API process
in the embedded default), every ``TIDINGS_MAIL_INTERVAL_SECONDS``.

A pass claims due messages (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so several processes
split them) by moving their next attempt a lease ahead, commits, sends them outside any
transaction, then deletes each one sent, or schedules the next attempt with a growing delay
(at most ``TIDINGS_MAIL_MAX_ATTEMPTS``; then it stays, failed, with its body blanked). A
process that stops between sending and deleting sends that message again after the lease:
delivery is at least once.

Backends (``TIDINGS_MAIL_BACKEND``): ``log`` (the default, for development: each message is
logged and written as an ``.eml`` file under ``<data dir>/mail/``, where the link in it can be
followed) and ``smtp`` (aiosmtplib: ``TIDINGS_SMTP_*``).
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path
from typing import Any, Protocol

import aiosmtplib
import structlog
from sqlalchemy import delete, select, update

from tidings.core.db import Database, utcnow
from tidings.core.stopping import stopped_within
from tidings.mail.models import OutgoingMail
from tidings.settings import Settings

log = structlog.get_logger("tidings.mail")

LEASE = timedelta(minutes=2)  # a claimed message is due again after this if not settled
BATCH = 50


class Sender(Protocol):
    async def send(self, message: EmailMessage) -> None: ...


class LogSender:
    """Development: the message goes to the log and to ``<directory>/<id>.eml``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    async def send(self, message: EmailMessage) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        name = str(message["Message-ID"]).strip("<>").replace("@", "_").replace("/", "_")
        (self.directory / f"{name}.eml").write_bytes(bytes(message))
        log.info("mail_logged", to=message["To"], subject=message["Subject"], file=name + ".eml")


class SmtpSender:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    async def send(self, message: EmailMessage) -> None:
        s = self.settings
        password = s.smtp_password.get_secret_value() if s.smtp_password else None
        await aiosmtplib.send(
            message,
            hostname=s.smtp_host,
            port=s.smtp_port,
            username=s.smtp_username,
            password=password,
            use_tls=s.smtp_security == "tls",
            start_tls=s.smtp_security == "starttls",
            timeout=s.smtp_timeout_seconds,
        )


def sender_for(settings: Settings) -> Sender:
    if settings.mail_backend == "smtp":
        return SmtpSender(settings)
    return LogSender(Path(settings.data_dir) / "mail")


def _message(settings: Settings, row: OutgoingMail) -> EmailMessage:
    message = EmailMessage()
    message["From"] = settings.mail_from
    message["To"] = row.to_address
    message["Subject"] = row.subject
    message["Message-ID"] = make_msgid(idstring=str(row.id), domain="tidings.invalid")
    message.set_content(row.body)
    return message


def _retry_delay(attempts: int) -> timedelta:
    return timedelta(seconds=min(30 * 2 ** (attempts - 1), 3600))  # 30 s, 1 min, ... 1 h


async def send_due(db: Database, settings: Settings, sender: Sender) -> int:
    """One pass: claim the due messages, send them, settle each; returns how many were sent."""
    now = utcnow()
    async with db.unit_of_work(write=True) as session:
        stmt = (
            select(OutgoingMail)
            .where(OutgoingMail.next_attempt_at <= now)
            .order_by(OutgoingMail.next_attempt_at)
            .limit(BATCH)
            .with_for_update(skip_locked=True)
        )
        rows = list((await session.execute(stmt)).scalars())
        for row in rows:
            row.next_attempt_at = now + LEASE
            row.attempts += 1
        claimed = [(row.id, row.attempts, _message(settings, row)) for row in rows]
    sent = 0
    for row_id, attempts, message in claimed:
        try:
            await sender.send(message)
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"[:500]
            await _failed(db, settings, row_id, attempts, error)
            continue
        async with db.unit_of_work(write=True) as session:
            await session.execute(delete(OutgoingMail).where(OutgoingMail.id == row_id))
        sent += 1
    return sent


async def _failed(db: Database, settings: Settings, row_id: int, attempts: int, error: str) -> None:
    values: dict[str, Any] = {"last_error": error}
    if attempts >= settings.mail_max_attempts:
        values.update(next_attempt_at=None, body="")  # for good; the body may hold a link
        log.error("mail_failed", mail_id=row_id, attempts=attempts, error=error)
    else:
        values["next_attempt_at"] = utcnow() + _retry_delay(attempts)
        log.warning("mail_retry", mail_id=row_id, attempts=attempts, error=error)
    async with db.unit_of_work(write=True) as session:
        await session.execute(
            update(OutgoingMail).where(OutgoingMail.id == row_id).values(**values)
        )


async def run_mail(stop: asyncio.Event, container: Any) -> None:
    """The background loop registered with the event runtime (``container`` is the app's)."""
    settings: Settings = container.settings
    sender = sender_for(settings)
    while not await stopped_within(stop, settings.mail_interval_seconds):
        try:
            await send_due(container.db, settings, sender)
        except Exception as exc:
            log.warning("mail_pass_failed", error=f"{type(exc).__name__}: {exc}")
