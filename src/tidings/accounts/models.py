"""Account tables."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from tidings.core.db import Base, utcnow
from tidings.core.ids import new_id

ERASURE_PENDING = "deleted_at IS NOT NULL AND erased_at IS NULL"
STAFF = "role <> 'user'"  # moderators and admins
FINDABLE = "suspended IS false AND deleted_at IS NULL"  # GET /api/v1/users?prefix= finds these


class User(Base):
    __tablename__ = "users"
    __table_args__ = (
        # GET /api/v1/users?prefix=: a prefix is a range of username_key; on PostgreSQL the
        # text_pattern_ops operators compare bytes whatever the database's collation; only
        # the accounts that can be found, so a prefix full of suspended ones is no long walk
        Index(
            "ix_users_username_key_prefix",
            "username_key",
            postgresql_ops={"username_key": "text_pattern_ops"},
            postgresql_where=text(FINDABLE),
            sqlite_where=text(FINDABLE),
        ),
        # moderators and admins (a handful): told of new reports, listed by role
        Index(
            "ix_users_staff",
            "id",
            postgresql_where=text(STAFF),
            sqlite_where=text(STAFF),
        ),
        # the accounts whose erasure is pending (tidings.accounts.erasure): a handful at most
        Index(
            "ix_users_erasure_pending",
            "deleted_at",
            postgresql_where=text(ERASURE_PENDING),
            sqlite_where=text(ERASURE_PENDING),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True, default=new_id, autoincrement=False)
    username: Mapped[str] = mapped_column(String(30))
    username_key: Mapped[str] = mapped_column(String(30), unique=True)  # lower-cased
    email: Mapped[str] = mapped_column(String(254), unique=True)  # normalised, lower-cased
    email_verified: Mapped[bool] = mapped_column(Boolean, default=False)
    password_hash: Mapped[str | None] = mapped_column(String(255))
    display_name: Mapped[str] = mapped_column(String(50), default="")
    bio: Mapped[str] = mapped_column(Text, default="")
    avatar_url: Mapped[str | None] = mapped_column(String(2048))
    location: Mapped[str] = mapped_column(String(60), default="")
    website: Mapped[str | None] = mapped_column(String(2048))
    role: Mapped[str] = mapped_column(String(16), default="user")
    suspended: Mapped[bool] = mapped_column(Boolean, default=False)
    # follows need the account's approval (a follow request) while locked
    locked: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    follower_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    following_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    post_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    # when the account's deletion was asked for, and when its erasure finished
    deleted_at: Mapped[datetime | None] = mapped_column(default=None)
    erased_at: Mapped[datetime | None] = mapped_column(default=None)
