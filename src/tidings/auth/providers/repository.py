"""Queries on identities, flows in progress and login codes."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, func, select, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from tidings.accounts.models import User
from tidings.auth.providers.models import OAuthAuthorization, OAuthLoginCode, UserIdentity
from tidings.core.errors import Conflict

LOGIN_CODE_RETENTION = timedelta(minutes=10)  # kept past expiry so a replay is still recognised


class ProviderRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # --- identities -----------------------------------------------------------------------

    async def identity(self, provider: str, subject: str) -> UserIdentity | None:
        stmt = select(UserIdentity).where(
            UserIdentity.provider == provider, UserIdentity.subject == subject
        )
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def identity_of_user(self, user_id: int, provider: str) -> UserIdentity | None:
        stmt = select(UserIdentity).where(
            UserIdentity.user_id == user_id, UserIdentity.provider == provider
        )
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def identities_of_user(self, user_id: int) -> list[UserIdentity]:
        stmt = (
            select(UserIdentity)
            .where(UserIdentity.user_id == user_id)
            .order_by(UserIdentity.provider)
        )
        return list((await self.session.execute(stmt)).scalars())

    async def count_identities(self, user_id: int) -> int:
        stmt = select(func.count()).select_from(UserIdentity).where(UserIdentity.user_id == user_id)
        return int((await self.session.execute(stmt)).scalar_one())

    async def add_identity(self, identity: UserIdentity) -> UserIdentity:
        """Insert; a concurrent link of the same identity becomes a 409, not a 500."""
        try:
            async with self.session.begin_nested():
                self.session.add(identity)
        except IntegrityError as exc:
            raise Conflict("That sign-in identity was just linked by another request.") from exc
        return identity

    async def delete_identity(self, identity: UserIdentity) -> None:
        await self.session.delete(identity)
        await self.session.flush()

    async def user_by_email(self, email: str) -> User | None:
        stmt = select(User).where(User.email == email)
        return (await self.session.execute(stmt)).scalar_one_or_none()

    # --- flows in progress ----------------------------------------------------------------

    async def add_authorization(self, flow: OAuthAuthorization, now: datetime) -> None:
        await self.session.execute(
            delete(OAuthAuthorization)
            .where(OAuthAuthorization.expires_at < now)
            .execution_options(synchronize_session=False)
        )
        self.session.add(flow)
        await self.session.flush()

    async def ticket_intent(self, ticket_hash: str, provider: str, now: datetime) -> str | None:
        """What a ticket not yet redeemed is for (``link`` or ``reauth``); None when unusable."""
        stmt = select(OAuthAuthorization.intent).where(
            OAuthAuthorization.ticket_hash == ticket_hash,
            OAuthAuthorization.provider == provider,
            OAuthAuthorization.expires_at > now,
            OAuthAuthorization.used_at.is_(None),
        )
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def bind_ticket(
        self, ticket_hash: str, provider: str, now: datetime, values: dict[str, object]
    ) -> OAuthAuthorization | None:
        """Redeem a ticket (to link, or to confirm the holder) once: it becomes a flow bound
        to a browser (``values`` set)."""
        result = await self.session.execute(
            update(OAuthAuthorization)
            .where(
                OAuthAuthorization.ticket_hash == ticket_hash,
                OAuthAuthorization.provider == provider,
                OAuthAuthorization.expires_at > now,
                OAuthAuthorization.used_at.is_(None),
            )
            .values(ticket_hash=None, **values)
            .returning(OAuthAuthorization.id)
            .execution_options(synchronize_session=False)
        )
        flow_id = result.scalar_one_or_none()
        return None if flow_id is None else await self._fresh(flow_id)

    async def claim_state(
        self, state_hash: str, provider: str, now: datetime
    ) -> OAuthAuthorization | None:
        """Use a state once; None when unknown, expired, for another provider or already used.

        On PostgreSQL a concurrent claim waits for the first and then matches nothing; on
        SQLite writers are serialised.
        """
        result = await self.session.execute(
            update(OAuthAuthorization)
            .where(
                OAuthAuthorization.state_hash == state_hash,
                OAuthAuthorization.provider == provider,
                OAuthAuthorization.expires_at > now,
                OAuthAuthorization.used_at.is_(None),
            )
            .values(used_at=now)
            .returning(OAuthAuthorization.id)
            .execution_options(synchronize_session=False)
        )
        flow_id = result.scalar_one_or_none()
        return None if flow_id is None else await self._fresh(flow_id)

    async def set_result(self, flow_id: int, result_hash: str, expires_at: datetime) -> None:
        await self.session.execute(
            update(OAuthAuthorization)
            .where(OAuthAuthorization.id == flow_id)
            .values(result_hash=result_hash, expires_at=expires_at)
            .execution_options(synchronize_session=False)
        )

    async def claim_result(
        self, result_hash: str, challenge: str, session_id: int, now: datetime
    ) -> OAuthAuthorization | None:
        """Redeem a confirmed reauth flow's code once: for the session that asked, with the
        verifier of its PKCE ``challenge`` (compared in the database: S256 is deterministic)."""
        result = await self.session.execute(
            update(OAuthAuthorization)
            .where(
                OAuthAuthorization.result_hash == result_hash,
                OAuthAuthorization.session_id == session_id,
                OAuthAuthorization.code_challenge == challenge,
                OAuthAuthorization.intent == "reauth",
                OAuthAuthorization.expires_at > now,
            )
            .values(result_hash=None)
            .returning(OAuthAuthorization.id)
            .execution_options(synchronize_session=False)
        )
        flow_id = result.scalar_one_or_none()
        return None if flow_id is None else await self._fresh(flow_id)

    async def _fresh(self, flow_id: int) -> OAuthAuthorization | None:
        stmt = (
            select(OAuthAuthorization)
            .where(OAuthAuthorization.id == flow_id)
            .execution_options(populate_existing=True)
        )
        return (await self.session.execute(stmt)).scalar_one_or_none()

    # --- login codes ----------------------------------------------------------------------

    async def add_login_code(self, code: OAuthLoginCode, now: datetime) -> None:
        await self.session.execute(
            delete(OAuthLoginCode)
            .where(OAuthLoginCode.expires_at < now - LOGIN_CODE_RETENTION)
            .execution_options(synchronize_session=False)
        )
        self.session.add(code)
        await self.session.flush()

    async def login_code(self, code_hash: str) -> OAuthLoginCode | None:
        stmt = select(OAuthLoginCode).where(OAuthLoginCode.code_hash == code_hash)
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def claim_login_code(self, code_id: int, now: datetime) -> bool:
        result = await self.session.execute(
            update(OAuthLoginCode)
            .where(OAuthLoginCode.id == code_id, OAuthLoginCode.used_at.is_(None))
            .values(used_at=now)
            .execution_options(synchronize_session=False)
        )
        assert isinstance(result, CursorResult)
        return result.rowcount == 1
