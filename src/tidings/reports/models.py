"""Reports: a user flags a post, a comment or an account for moderators to review."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import BigInteger, ForeignKey, Index, String, text
from sqlalchemy.orm import Mapped, mapped_column

from tidings.core.db import Base, utcnow
from tidings.core.ids import new_id


class ReportStatus(StrEnum):
    OPEN = "open"  # waiting for a moderator
    RESOLVED = "resolved"  # a moderator acted on it (deleted the content, suspended the user)
    DISMISSED = "dismissed"  # a moderator found nothing to act on


class ReportReason(StrEnum):
    SPAM = "spam"
    HARASSMENT = "harassment"
    HATE = "hate"
    VIOLENCE = "violence"
    SEXUAL = "sexual"
    SELF_HARM = "self_harm"
    MISINFORMATION = "misinformation"
    IMPERSONATION = "impersonation"
    OTHER = "other"


class TargetType(StrEnum):
    POST = "post"
    COMMENT = "comment"
    USER = "user"


OPEN_ONLY = text("status = 'open'")


class Report(Base):
    """One user's report of one target. A reporter has at most one open report per target
    (a partial unique index); once a moderator closes it, the same target may be reported
    again."""

    __tablename__ = "reports"
    __table_args__ = (
        Index("ix_reports_status_id", "status", "id"),
        Index("ix_reports_target", "target_type", "target_id"),
        Index(
            "uq_reports_open_per_reporter",
            "reporter_id",
            "target_type",
            "target_id",
            unique=True,
            postgresql_where=OPEN_ONLY,
            sqlite_where=OPEN_ONLY,
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True, default=new_id, autoincrement=False)
    reporter_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    target_type: Mapped[str] = mapped_column(String(16))
    target_id: Mapped[int] = mapped_column(BigInteger)
    # who wrote the post or comment (the account itself for a user report): what a moderator
    # acts on, and who may not report it
    target_owner_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    reason: Mapped[str] = mapped_column(String(32))
    note: Mapped[str] = mapped_column(String(1000), default="")
    status: Mapped[str] = mapped_column(String(16), default=ReportStatus.OPEN.value)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    resolved_at: Mapped[datetime | None] = mapped_column(default=None)
    resolved_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), index=True, default=None
    )
    resolution_note: Mapped[str] = mapped_column(String(1000), default="")
