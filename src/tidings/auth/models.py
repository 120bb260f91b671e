"""Sign-in sessions (refresh-token families) and refresh tokens."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from tidings.core.db import Base, utcnow
from tidings.core.ids import new_id


class AuthSession(Base):
    """One sign-in: the family every rotated refresh token belongs to."""

    __tablename__ = "auth_sessions"
    __table_args__ = (  # retention
        Index("ix_auth_sessions_revoked_at", "revoked_at"),
        Index("ix_auth_sessions_last_used_at", "last_used_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True, default=new_id, autoincrement=False)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)
    revoked_reason: Mapped[str | None] = mapped_column(String(32), default=None)
    # what the user sees of it in GET /api/v1/me/sessions: where it signed in from, and when
    # it was last refreshed
    ip: Mapped[str | None] = mapped_column(String(45), default=None)
    user_agent: Mapped[str | None] = mapped_column(String(256), default=None)
    last_used_at: Mapped[datetime | None] = mapped_column(default=None)
    # when the holder of an account without a password last confirmed it is them through
    # their sign-in provider in this session (POST /api/v1/me/reauthentication/{provider})
    reauthenticated_at: Mapped[datetime | None] = mapped_column(default=None)


class RefreshToken(Base):
    __tablename__ = "refresh_tokens"
    __table_args__ = (
        Index("ix_refresh_tokens_session_id", "session_id"),
        Index("ix_refresh_tokens_expires_at", "expires_at"),  # retention
    )

    id: Mapped[int] = mapped_column(primary_key=True, default=new_id, autoincrement=False)
    session_id: Mapped[int] = mapped_column(ForeignKey("auth_sessions.id", ondelete="CASCADE"))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None] = mapped_column(default=None)
