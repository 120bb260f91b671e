"""The mail loop against a real SMTP server on loopback (aiosmtpd), and its retries when the
server is not there."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select

from tests.conftest import make_settings
from tests.support.processes import free_port
from tidings.core.container import Container
from tidings.core.db import utcnow
from tidings.mail.delivery import LogSender, SmtpSender, send_due
from tidings.mail.models import OutgoingMail
from tidings.mail.service import queue_mail
from tidings.settings import Settings


class Inbox:
    def __init__(self) -> None:
        self.received: list[tuple[str, list[str], bytes]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.received.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 OK"


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


def _settings(tmp_path: Path, database_url: str, port: int, **extra: Any) -> Settings:
    return make_settings(
        tmp_path / "data",
        database_url,
        mail_backend="smtp",
        smtp_port=port,
        smtp_security="none",
        smtp_timeout_seconds=5,
        mail_from="Tidings <no-reply@tidings.test>",
        **extra,
    )


@pytest.fixture
async def queued(tmp_path: Path, database_url: str) -> AsyncIterator[Container]:
    container = Container.build(make_settings(tmp_path / "data", database_url))
    async with container.db.unit_of_work(write=True) as session:
        queue_mail(session, "reader@example.com", "Hello", "A body\nwith two lines.\n")
    yield container
    await container.close()


async def _rows(container: Container) -> list[OutgoingMail]:
    async with container.db.unit_of_work(write=False) as session:
        return list((await session.execute(select(OutgoingMail))).scalars())


async def test_queued_mail_reaches_the_smtp_server_once(
    tmp_path: Path, database_url: str, queued: Container, smtp: tuple[Inbox, int]
) -> None:
    inbox, port = smtp
    settings = _settings(tmp_path, database_url, port)
    assert await send_due(queued.db, settings, SmtpSender(settings)) == 1
    [(sender, recipients, content)] = inbox.received
    assert sender == "no-reply@tidings.test"
    assert recipients == ["reader@example.com"]
    assert b"Subject: Hello" in content
    assert b"with two lines." in content
    assert await _rows(queued) == []  # sent: gone
    assert await send_due(queued.db, settings, SmtpSender(settings)) == 0
    assert len(inbox.received) == 1


async def test_a_missing_server_is_retried_then_given_up_with_the_body_blanked(
    tmp_path: Path, database_url: str, queued: Container
) -> None:
    settings = _settings(tmp_path, database_url, free_port(), mail_max_attempts=2)
    sender = SmtpSender(settings)
    assert await send_due(queued.db, settings, sender) == 0
    [row] = await _rows(queued)
    assert row.attempts == 1
    assert row.last_error
    assert row.next_attempt_at is not None
    assert row.next_attempt_at > utcnow()  # backed off: not due again at once
    assert row.body
    assert await send_due(queued.db, settings, sender) == 0  # not due yet: not attempted
    async with queued.db.unit_of_work(write=True) as session:
        (await session.get(OutgoingMail, row.id)).next_attempt_at = utcnow()  # type: ignore[union-attr]
    assert await send_due(queued.db, settings, sender) == 0
    [row] = await _rows(queued)
    assert row.attempts == 2
    assert row.next_attempt_at is None  # given up
    assert row.body == ""


async def test_the_log_backend_writes_each_message_to_a_file(
    tmp_path: Path, queued: Container
) -> None:
    directory = tmp_path / "mail"
    directory.mkdir()
    week_old = time.time() - 7 * 86400 - 60
    stale, recent, other = directory / "stale.eml", directory / "recent.eml", directory / "x.txt"
    for path in (stale, recent, other):
        path.write_text("Subject: earlier\n")
    os.utime(stale, (week_old, week_old))  # older than a week: removed as a new one comes
    os.utime(other, (week_old, week_old))  # not ours: kept
    assert await send_due(queued.db, queued.settings, LogSender(directory)) == 1
    [path] = set(directory.glob("*.eml")) - {recent}
    assert "To: reader@example.com" in path.read_text()
    assert (stale.exists(), recent.exists(), other.exists()) == (False, True, True)


class Kept:
    def __init__(self) -> None:
        self.to: list[str] = []

    async def send(self, message: Any, recipient: str) -> None:
        self.to.append(recipient)


async def test_an_unsendable_or_expired_message_does_not_hold_up_the_rest(
    queued: Container,
) -> None:
    async with queued.db.unit_of_work(write=True) as session:
        queue_mail(session, "x@example.com\r\nBcc: victim@example.com", "Injected", "body")
        queue_mail(session, "late@example.com", "Late", "body", expires_at=utcnow())

        async def boom(session: Any, mail: OutgoingMail, settings: Settings) -> bool:
            raise RuntimeError("renderer bug")

        queue_mail(session, "rendered@example.com", "", kind="boom")
        queue_mail(session, "nobody@example.com", "", kind="skip")

    async def skip(session: Any, mail: OutgoingMail, settings: Settings) -> bool:
        return False

    sender = Kept()
    renderers = {"boom": boom, "skip": skip}
    assert await send_due(queued.db, queued.settings, sender, renderers) == 1
    assert sender.to == ["reader@example.com"]  # the good one went
    rows = {row.to_address: row for row in await _rows(queued)}
    assert "nobody@example.com" not in rows  # nothing to send: gone
    injected = rows["x@example.com\r\nBcc: victim@example.com"]
    assert injected.next_attempt_at is None  # failed for good, at once
    assert injected.body == ""
    assert injected.last_error is not None
    assert injected.last_error.startswith("unsendable")
    assert rows["late@example.com"].next_attempt_at is None
    assert rows["late@example.com"].last_error == "expired before it could be sent"
    broken = rows["rendered@example.com"]
    assert broken.last_error == "RuntimeError: renderer bug"
    assert broken.next_attempt_at is not None  # tried again later
    assert broken.next_attempt_at > utcnow()
