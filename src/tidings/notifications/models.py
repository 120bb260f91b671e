"""Notification tables: one row per notification as read (a group), and who is in it.

A group is *open* while unread: ``group_key`` names it (``like:<post id>``, ``follow``, ...) and
``UNIQUE(recipient_id, group_key)`` makes concurrent consumers meet on the same row. Marking a
group read clears ``group_key`` (NULLs never collide), so later activity opens a fresh group
while the read one stays in the list as history.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from tidings.core.db import Base, utcnow
from tidings.core.ids import new_id


class NotificationGroup(Base):
    __tablename__ = "notification_groups"
    __table_args__ = (
        UniqueConstraint(
            "recipient_id", "group_key", name="uq_notification_groups_recipient_id_group_key"
        ),
        # the list, newest activity first
        Index("ix_notification_groups_recipient_id_sort_key", "recipient_id", "sort_key"),
        # the unread count and ?unread=true (read_at IS NULL is an index condition)
        Index(
            "ix_notification_groups_recipient_id_read_at_sort_key",
            "recipient_id",
            "read_at",
            "sort_key",
        ),
        Index("ix_notification_groups_read_at", "read_at"),  # retention: read long ago
    )

    id: Mapped[int] = mapped_column(primary_key=True, default=new_id, autoincrement=False)
    recipient_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))
    group_key: Mapped[str | None] = mapped_column(String(96), default=None)  # NULL once read
    post_id: Mapped[int | None] = mapped_column(BigInteger, default=None)
    comment_id: Mapped[int | None] = mapped_column(BigInteger, default=None)
    actor_count: Mapped[int] = mapped_column(Integer, default=0)
    latest_actor_ids: Mapped[list[int]] = mapped_column(JSON, default=list)  # newest first, ≤ 3
    title: Mapped[str | None] = mapped_column(String(200), default=None)  # system only
    body: Mapped[str | None] = mapped_column(Text, default=None)  # system only
    data: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)  # system, report
    sort_key: Mapped[int] = mapped_column(BigInteger, default=new_id)  # fresh id per new actor
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_event_at: Mapped[datetime] = mapped_column(default=utcnow)
    read_at: Mapped[datetime | None] = mapped_column(default=None)


class NotificationActor(Base):
    """Who is counted in a group: liking, unliking and liking again counts once."""

    __tablename__ = "notification_actors"
    # a block finds the groups that count someone; deleting a user cascades here
    __table_args__ = (Index("ix_notification_actors_actor_id", "actor_id"),)

    group_id: Mapped[int] = mapped_column(
        ForeignKey("notification_groups.id", ondelete="CASCADE"), primary_key=True
    )
    actor_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
