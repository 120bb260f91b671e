"""Sending queued mail: a loop wherever the relay runs (``tidings worker``, or the API process
in the embedded default), every ``TIDINGS_MAIL_INTERVAL_SECONDS``.

A pass claims up to :data:`BATCH` due messages (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so
several processes split them) by moving their next attempt a lease ahead (longer than the batch
can take to send), renders those whose body is written at sending time, commits, sends them
outside any transaction, then deletes each one sent, or schedules the next attempt with a
growing delay (at most ``TIDINGS_MAIL_MAX_ATTEMPTS``; then it stays, failed, with its body
blanked). A message that cannot even be built (a malformed address) fails for good at once,
and one past its ``expires_at`` is given up: neither holds up the rest. A process that stops
between sending and deleting sends that message again after the lease: delivery is at least
once; settling checks the claim is still this pass's.

Backends (``TIDINGS_MAIL_BACKEND``): ``log`` (the development default: each message is
written as an ``.eml`` file, readable by its owner only, under ``<data dir>/mail/``, where the
link in it can be followed; refused in production), ``smtp`` (aiosmtplib: ``TIDINGS_SMTP_*``)
and ``disabled`` (the production default: nothing is queued; the routes that need mail answer
503).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from contextlib import suppress
from datetime import timedelta
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path
from typing import Any, Protocol

import aiosmtplib
import structlog
from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from tidings.core.db import Database, utcnow
from tidings.core.stopping import stopped_within
from tidings.mail.models import OutgoingMail
from tidings.settings import Settings

log = structlog.get_logger("tidings.mail")

BATCH = 10

# Writes the subject and body of a message whose ``kind`` is its own, in the claiming
# transaction; False: there is nothing to send (the row is deleted).
Renderer = Callable[[AsyncSession, OutgoingMail, Settings], Awaitable[bool]]


class Sender(Protocol):
    async def send(self, message: EmailMessage, recipient: str) -> None: ...


class LogSender:
    """Development: each message goes to ``<directory>/<id>.eml`` (mode 0600); files older
    than :attr:`KEEP` are removed as new ones are written (they hold one-time links, and a
    long-running development server would otherwise pile them up)."""

    KEEP = timedelta(days=7)

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def _write(self, name: str, data: bytes) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.directory / name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        oldest = time.time() - self.KEEP.total_seconds()
        with os.scandir(self.directory) as entries:
            for entry in entries:
                if entry.name.endswith(".eml") and entry.stat().st_mtime < oldest:
                    with suppress(FileNotFoundError):  # another process removed it first
                        os.unlink(entry.path)

    async def send(self, message: EmailMessage, recipient: str) -> None:
        name = str(message["Message-ID"]).strip("<>").replace("@", "_").replace("/", "_")
        await asyncio.to_thread(self._write, f"{name}.eml", bytes(message))
        log.info("mail_written", subject=message["Subject"], file=f"{name}.eml")


class SmtpSender:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    async def send(self, message: EmailMessage, recipient: str) -> None:
        s = self.settings
        password = s.smtp_password.get_secret_value() if s.smtp_password else None
        await aiosmtplib.send(
            message,
            recipients=[recipient],  # never parsed back out of the headers
            hostname=s.smtp_host,
            port=s.smtp_port,
            username=s.smtp_username,
            password=password,
            use_tls=s.smtp_security == "tls",
            start_tls=s.smtp_security == "starttls",
            timeout=s.smtp_timeout_seconds,
        )


def sender_for(settings: Settings) -> Sender:
    if settings.effective_mail_backend == "smtp":
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


def lease_for(settings: Settings) -> timedelta:
    """How long a claim lasts: longer than a batch can take to send (each message gets its
    own connection, each step of it up to the SMTP timeout)."""
    return timedelta(seconds=max(120.0, 3 * BATCH * settings.smtp_timeout_seconds))


def _give_up(row: OutgoingMail, error: str) -> None:
    row.next_attempt_at = None
    row.body = ""  # it may hold a one-time link
    row.last_error = error[:500]
    log.error("mail_failed", mail_id=row.id, attempts=row.attempts, error=row.last_error)


async def _claim(
    session: AsyncSession,
    settings: Settings,
    renderers: Mapping[str, Renderer],
    lease: timedelta,
) -> list[tuple[int, int, EmailMessage, str]]:
    now = utcnow()
    stmt = (
        select(OutgoingMail)
        .where(OutgoingMail.next_attempt_at <= now)
        .order_by(OutgoingMail.next_attempt_at)
        .limit(BATCH)
        .with_for_update(skip_locked=True)
    )
    claimed: list[tuple[int, int, EmailMessage, str]] = []
    for row in list((await session.execute(stmt)).scalars()):
        row.attempts += 1
        row.next_attempt_at = now + lease
        if row.expires_at is not None and row.expires_at <= now:
            _give_up(row, "expired before it could be sent")
            continue
        if row.kind != "message":
            render = renderers.get(row.kind)
            if render is None:
                _give_up(row, f"no renderer for mail of kind {row.kind!r} in this process")
                continue
            try:
                async with session.begin_nested():
                    wanted = await render(session, row, settings)
            except Exception as exc:  # its savepoint is undone; the claim of the rest stands
                row.next_attempt_at = now + _retry_delay(row.attempts)
                row.last_error = f"{type(exc).__name__}: {exc}"[:500]
                continue
            if not wanted:
                await session.delete(row)
                continue
            row.kind = "message"  # rendered once: a retry sends the same message
        try:
            message = _message(settings, row)
        except Exception as exc:  # a malformed address or subject: it never will be sendable
            _give_up(row, f"unsendable: {type(exc).__name__}: {exc}")
            continue
        claimed.append((row.id, row.attempts, message, row.to_address))
    return claimed


async def send_due(
    db: Database,
    settings: Settings,
    sender: Sender,
    renderers: Mapping[str, Renderer] | None = None,
) -> int:
    """One pass: claim the due messages, send them, settle each; returns how many were sent."""
    lease = lease_for(settings)
    started = time.monotonic()
    async with db.unit_of_work(write=True) as session:
        claimed = await _claim(session, settings, renderers or {}, lease)
    sent = 0
    for row_id, attempts, message, recipient in claimed:
        if time.monotonic() - started > lease.total_seconds() / 2:
            break  # the rest stay claimed, and are due again when the lease ends
        try:
            await sender.send(message, recipient)
        except Exception as exc:
            await _failed(db, settings, row_id, attempts, f"{type(exc).__name__}: {exc}"[:500])
            continue
        async with db.unit_of_work(write=True) as session:
            await session.execute(
                delete(OutgoingMail).where(
                    OutgoingMail.id == row_id, OutgoingMail.attempts == attempts
                )
            )
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
            update(OutgoingMail)
            .where(OutgoingMail.id == row_id, OutgoingMail.attempts == attempts)  # still ours
            .values(**values)
        )


def default_renderers() -> dict[str, Renderer]:
    from tidings.recovery.service import RESET_MAIL, render_password_reset

    return {RESET_MAIL: render_password_reset}


async def run_mail(stop: asyncio.Event, container: Any) -> None:
    """The background loop registered with the event runtime (``container`` is the app's)."""
    settings: Settings = container.settings
    if settings.effective_mail_backend == "disabled":
        return
    sender = sender_for(settings)
    renderers = default_renderers()
    while not await stopped_within(stop, settings.mail_interval_seconds):
        try:
            await send_due(container.db, settings, sender, renderers)
        except Exception as exc:
            log.warning("mail_pass_failed", error=f"{type(exc).__name__}: {exc}")
