"""Messages waiting to be sent, written in the transaction that decided to send them."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from tidings.core.db import Base, utcnow
from tidings.core.ids import new_id


class OutgoingMail(Base):
    """One message. The row is deleted once the message is handed to the mail server; one that
    fails every attempt stays, with its body blanked (it may hold a one-time link) and the
    last error, for an operator to look at.

    ``kind`` other than ``message``: the body is written when the message is sent, by that
    kind's renderer (:data:`tidings.mail.delivery.Renderer`), which may decide there is nothing
    to send (a password reset for an address without an account)."""

    __tablename__ = "outgoing_mail"
    __table_args__ = (Index("ix_outgoing_mail_next_attempt_at", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(primary_key=True, default=new_id, autoincrement=False)
    kind: Mapped[str] = mapped_column(String(32), default="message")
    to_address: Mapped[str] = mapped_column(String(254))
    subject: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # when it is due next (queue_mail: now); None once it has failed for good
    next_attempt_at: Mapped[datetime | None] = mapped_column(default=None)
    # not sent by then: given up (the link in it would have expired)
    expires_at: Mapped[datetime | None] = mapped_column(default=None)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(String(500), default=None)
