"""Linked sign-in identities, pending authorizations and one-time login codes."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from tidings.core.db import Base, utcnow
from tidings.core.ids import new_id


class UserIdentity(Base):
    """An account at a provider, keyed by ``(provider, subject)`` — never by email.

    One identity per provider per user. Provider tokens are kept only encrypted (Fernet).
    """

    __tablename__ = "user_identities"
    __table_args__ = (
        UniqueConstraint("provider", "subject", name="uq_user_identities_provider_subject"),
        UniqueConstraint("user_id", "provider", name="uq_user_identities_user_id_provider"),
    )

    id: Mapped[int] = mapped_column(primary_key=True, default=new_id, autoincrement=False)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    provider: Mapped[str] = mapped_column(String(32))
    subject: Mapped[str] = mapped_column(String(255))
    email: Mapped[str | None] = mapped_column(String(254), default=None)
    email_verified: Mapped[bool] = mapped_column(Boolean, default=False)
    access_token_encrypted: Mapped[str | None] = mapped_column(Text, default=None)
    refresh_token_encrypted: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(default=None)


class OAuthAuthorization(Base):
    """One authorization-code flow in progress (at most ten minutes).

    ``state_hash`` is set once a browser is bound to the flow (the state cookie); a link or
    reauth flow starts without a browser (from an API call of a signed-in user) and carries a
    one-time ``ticket_hash`` until its browser arrives. A confirmed reauth flow carries
    ``result_hash`` until the session that asked redeems its code.
    ``used_at`` makes the state one-time.
    """

    __tablename__ = "oauth_authorizations"
    __table_args__ = (Index("ix_oauth_authorizations_expires_at", "expires_at"),)

    id: Mapped[int] = mapped_column(primary_key=True, default=new_id, autoincrement=False)
    provider: Mapped[str] = mapped_column(String(32))
    intent: Mapped[str] = mapped_column(String(8))  # "login" | "link" | "reauth"
    user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), default=None, index=True
    )
    session_id: Mapped[int | None] = mapped_column(
        ForeignKey("auth_sessions.id", ondelete="CASCADE"), default=None, index=True
    )
    state_hash: Mapped[str | None] = mapped_column(String(64), unique=True, default=None)
    ticket_hash: Mapped[str | None] = mapped_column(String(64), unique=True, default=None)
    # a reauth flow the provider confirmed: the one-time code its session redeems to finish
    result_hash: Mapped[str | None] = mapped_column(String(64), unique=True, default=None)
    nonce: Mapped[str | None] = mapped_column(String(128), default=None)
    code_verifier_encrypted: Mapped[str | None] = mapped_column(Text, default=None)
    redirect_uri: Mapped[str] = mapped_column(String(2048))
    app_state: Mapped[str | None] = mapped_column(String(512), default=None)
    code_challenge: Mapped[str | None] = mapped_column(String(128), default=None)
    code_challenge_method: Mapped[str | None] = mapped_column(String(8), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None] = mapped_column(default=None)


class OAuthLoginCode(Base):
    """The one-time, 60-second code the app exchanges at the token endpoint (stored hashed)."""

    __tablename__ = "oauth_login_codes"
    __table_args__ = (Index("ix_oauth_login_codes_expires_at", "expires_at"),)

    id: Mapped[int] = mapped_column(primary_key=True, default=new_id, autoincrement=False)
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    provider: Mapped[str] = mapped_column(String(32))
    redirect_uri: Mapped[str] = mapped_column(String(2048))
    code_challenge: Mapped[str | None] = mapped_column(String(128), default=None)
    code_challenge_method: Mapped[str | None] = mapped_column(String(8), default=None)
    session_id: Mapped[int | None] = mapped_column(
        ForeignKey("auth_sessions.id", ondelete="SET NULL"), default=None, index=True
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None] = mapped_column(default=None)
