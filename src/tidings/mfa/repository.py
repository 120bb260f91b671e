"""Queries of two-step sign-in."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from tidings.mfa.models import MfaRecoveryCode, MfaTotp


class MfaRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def totp(self, user_id: int) -> MfaTotp | None:
        return await self.session.get(MfaTotp, user_id, populate_existing=True)

    async def confirmed(self, user_id: int) -> MfaTotp | None:
        row = await self.totp(user_id)
        return row if row is not None and row.confirmed_at is not None else None

    async def start(self, user_id: int, secret_encrypted: str, now: datetime) -> None:
        """A new pending authenticator, replacing a pending one."""
        row = await self.totp(user_id)
        if row is None:
            self.session.add(
                MfaTotp(user_id=user_id, secret_encrypted=secret_encrypted, created_at=now)
            )
        else:
            row.secret_encrypted, row.created_at = secret_encrypted, now
            row.confirmed_at = row.last_step = None
        await self.session.flush()

    async def use_step(self, user_id: int, step: int) -> bool:
        """Take time step ``step`` once: False when it (or a later one) was used already."""
        result = await self.session.execute(
            update(MfaTotp)
            .where(
                MfaTotp.user_id == user_id,
                or_(MfaTotp.last_step.is_(None), MfaTotp.last_step < step),
            )
            .values(last_step=step)
            .returning(MfaTotp.user_id)
            .execution_options(synchronize_session=False)
        )
        return result.scalar_one_or_none() is not None

    async def confirm(self, user_id: int, now: datetime) -> None:
        await self.session.execute(
            update(MfaTotp)
            .where(MfaTotp.user_id == user_id)
            .values(confirmed_at=now)
            .execution_options(synchronize_session=False)
        )

    async def replace_codes(self, user_id: int, salt: str, hashes: list[str]) -> None:
        await self.session.execute(
            delete(MfaRecoveryCode).where(MfaRecoveryCode.user_id == user_id)
        )
        self.session.add_all(
            MfaRecoveryCode(user_id=user_id, code_hash=h, salt=salt) for h in hashes
        )
        await self.session.flush()

    async def code_salts(self, user_id: int) -> list[str]:
        """The salts of the account's unused recovery codes (one set, one salt)."""
        stmt = (
            select(MfaRecoveryCode.salt)
            .where(MfaRecoveryCode.user_id == user_id, MfaRecoveryCode.used_at.is_(None))
            .distinct()
        )
        return list((await self.session.scalars(stmt)).all())

    async def use_code(self, user_id: int, code_hash: str, now: datetime) -> bool:
        """Use a recovery code once."""
        result = await self.session.execute(
            update(MfaRecoveryCode)
            .where(
                MfaRecoveryCode.user_id == user_id,
                MfaRecoveryCode.code_hash == code_hash,
                MfaRecoveryCode.used_at.is_(None),
            )
            .values(used_at=now)
            .returning(MfaRecoveryCode.id)
            .execution_options(synchronize_session=False)
        )
        return result.scalar_one_or_none() is not None

    async def codes_left(self, user_id: int) -> int:
        stmt = select(func.count()).where(
            MfaRecoveryCode.user_id == user_id, MfaRecoveryCode.used_at.is_(None)
        )
        return int(await self.session.scalar(stmt) or 0)

    async def remove(self, user_id: int) -> bool:
        """Turn two-step sign-in off (its codes too); False when there was nothing."""
        await self.session.execute(
            delete(MfaRecoveryCode).where(MfaRecoveryCode.user_id == user_id)
        )
        result = await self.session.execute(
            delete(MfaTotp).where(MfaTotp.user_id == user_id).returning(MfaTotp.user_id)
        )
        return result.scalar_one_or_none() is not None
