"""Queries on one-time email tokens. Nothing here commits."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from tidings.core.db import utcnow
from tidings.recovery.models import EmailToken


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def issue(self, user_id: int, purpose: str, email: str, expires_at: datetime) -> str:
        """A new token for the purpose. Earlier unused ones keep working until one is used
        (:meth:`retire_others`): a new request cannot cancel a link already on its way."""
        token = secrets.token_urlsafe(32)
        self.session.add(
            EmailToken(
                user_id=user_id,
                purpose=purpose,
                token_hash=token_hash(token),
                email=email,
                expires_at=expires_at,
            )
        )
        return token

    async def issued_since(self, user_id: int, purpose: str, since: datetime) -> int:
        stmt = select(func.count()).where(
            EmailToken.user_id == user_id,
            EmailToken.purpose == purpose,
            EmailToken.created_at >= since,
        )
        return int((await self.session.execute(stmt)).scalar_one())

    async def retire_others(self, user_id: int, *purposes: str) -> None:
        """Once one token did its job, the user's other unused ones for these purposes stop
        working (one statement)."""
        await self.session.execute(
            update(EmailToken)
            .where(
                EmailToken.user_id == user_id,
                EmailToken.purpose.in_(purposes),
                EmailToken.used_at.is_(None),
            )
            .values(used_at=utcnow())
            .execution_options(synchronize_session=False)
        )

    async def owner(self, token: str, purpose: str) -> int | None:
        """The account a token was issued to, whatever its state; nothing locked."""
        stmt = select(EmailToken.user_id).where(
            EmailToken.token_hash == token_hash(token), EmailToken.purpose == purpose
        )
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def redeem(self, token: str, purpose: str) -> EmailToken | None:
        """The token's row, marked used, if it is unused and unexpired (locked until commit, so
        two requests cannot both use it)."""
        stmt = (
            select(EmailToken)
            .where(EmailToken.token_hash == token_hash(token), EmailToken.purpose == purpose)
            .with_for_update()
        )
        row = (await self.session.execute(stmt)).scalar_one_or_none()
        now = utcnow()
        if row is None or row.used_at is not None or row.expires_at <= now:
            return None
        row.used_at = now
        return row
