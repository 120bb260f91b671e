"""The social graph: follows, follow requests, blocks, mutes."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from tidings.core.db import Base, utcnow
from tidings.core.ids import new_id


class Follow(Base):
    __tablename__ = "follows"
    __table_args__ = (
        UniqueConstraint("follower_id", "followee_id", name="uq_follows_follower_id_followee_id"),
        Index("ix_follows_follower_id_id", "follower_id", "id"),
        Index("ix_follows_followee_id_id", "followee_id", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True, default=new_id, autoincrement=False)
    follower_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    followee_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Block(Base):
    __tablename__ = "blocks"
    __table_args__ = (
        UniqueConstraint("blocker_id", "blocked_id", name="uq_blocks_blocker_id_blocked_id"),
        Index("ix_blocks_blocked_id", "blocked_id"),
        Index("ix_blocks_blocker_id_id", "blocker_id", "id"),  # GET /me/blocks, the export
    )

    id: Mapped[int] = mapped_column(primary_key=True, default=new_id, autoincrement=False)
    blocker_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    blocked_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Mute(Base):
    __tablename__ = "mutes"
    __table_args__ = (
        UniqueConstraint("muter_id", "muted_id", name="uq_mutes_muter_id_muted_id"),
        Index("ix_mutes_muted_id", "muted_id"),  # deleting a user cascades here
        Index("ix_mutes_muter_id_id", "muter_id", "id"),  # GET /me/mutes, the export
    )

    id: Mapped[int] = mapped_column(primary_key=True, default=new_id, autoincrement=False)
    muter_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    muted_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class FollowRequest(Base):
    """A follow of a locked account, waiting for its approval (then it becomes a follow)."""

    __tablename__ = "follow_requests"
    __table_args__ = (
        UniqueConstraint(
            "requester_id", "target_id", name="uq_follow_requests_requester_id_target_id"
        ),
        Index("ix_follow_requests_target_id_id", "target_id", "id"),  # the incoming list
    )

    id: Mapped[int] = mapped_column(primary_key=True, default=new_id, autoincrement=False)
    requester_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    target_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
