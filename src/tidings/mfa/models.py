"""Two-step sign-in: a TOTP authenticator (RFC 6238) per account, and its recovery codes."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from tidings.core.db import Base, utcnow
from tidings.core.ids import new_id


class MfaTotp(Base):
    """The account's authenticator: its secret (encrypted, Fernet), pending until a first
    code confirms it; ``last_step`` is the last time step used, so a code works once."""

    __tablename__ = "mfa_totp"

    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, autoincrement=False
    )
    secret_encrypted: Mapped[str] = mapped_column(Text)
    confirmed_at: Mapped[datetime | None] = mapped_column(default=None)
    last_step: Mapped[int | None] = mapped_column(BigInteger, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class MfaRecoveryCode(Base):
    """A one-time code for when the authenticator is lost. Stored as scrypt of the code's
    SHA-256 with ``salt`` (random, one per set of ten: a guess costs one slow hash)."""

    __tablename__ = "mfa_recovery_codes"

    id: Mapped[int] = mapped_column(primary_key=True, default=new_id, autoincrement=False)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    salt: Mapped[str] = mapped_column(String(32))
    used_at: Mapped[datetime | None] = mapped_column(default=None)
