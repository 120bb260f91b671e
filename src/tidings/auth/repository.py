"""Queries on sign-in sessions and refresh tokens."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import BigInteger, Select, bindparam, exists, func, select, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncSession

from tidings.accounts.models import User
from tidings.auth.models import AuthSession, RefreshToken
from tidings.core import rawsql
from tidings.core.cache import record_eviction
from tidings.core.db import utcnow
from tidings.core.requestid import current_client_ip, current_user_agent

SESSION = "session"  # the row-cache kind of a sign-in session's state (see auth.service)


def _session_state(user_id: int, revoked_at: datetime | None) -> dict[str, Any]:
    """A sign-in session's state as the access-token check reads it (a row-cache row)."""
    return {"user_id": user_id, "revoked": revoked_at is not None}


# the row cache's misses, on the driver (tidings.core.rawsql): each new session's first request
_SESSION_ROWS = select(AuthSession.id, AuthSession.user_id, AuthSession.revoked_at).where(
    AuthSession.id.in_(bindparam("ids", expanding=True))
)


@cache
def _sign_in_state(columns: tuple[str, ...]) -> Select[Any]:
    users, sessions = User.__table__, AuthSession.__table__
    user_id = bindparam("user_id", type_=BigInteger)
    session_id = bindparam("session_id", type_=BigInteger)
    return (
        select(
            *(users.c[name] for name in columns),
            sessions.c.revoked_at.label("session_revoked_at"),
        )
        .join_from(users, sessions, sessions.c.user_id == users.c.id)
        .where(users.c.id == user_id, sessions.c.id == session_id)
    )


class AuthRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def sign_in_state(
        self, user_id: int, session_id: int, columns: tuple[str, ...]
    ) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """Some columns of the user and their sign-in session's state (the row cache's two
        rows), in one statement on the driver: no ORM objects, and no transaction opened for
        a read-only request."""
        params = {"user_id": user_id, "session_id": session_id}
        rows = await rawsql.fetch_dicts(self.session, _sign_in_state(columns), params)
        if not rows:
            return None
        row = rows[0]
        return row, _session_state(user_id, row.pop("session_revoked_at"))

    async def session_rows(self, ids: Iterable[int]) -> dict[int, dict[str, Any]]:
        """What the access-token check needs of some sign-in sessions (the row cache's rows)."""
        rows = await rawsql.fetch(self.session, _SESSION_ROWS, {"ids": list(ids)})
        return {row[0]: _session_state(row[1], row[2]) for row in rows}

    async def token_by_hash(self, token_hash: str) -> tuple[RefreshToken, AuthSession] | None:
        stmt = (
            select(RefreshToken, AuthSession)
            .join(AuthSession, AuthSession.id == RefreshToken.session_id)
            .where(RefreshToken.token_hash == token_hash)
        )
        row = (await self.session.execute(stmt)).first()
        return (row[0], row[1]) if row else None

    async def claim_token(self, token_id: int, now: datetime) -> bool:
        """Mark a refresh token used if nobody has; True for exactly one concurrent caller.

        On PostgreSQL a concurrent UPDATE waits for the first to commit, re-checks
        ``used_at IS NULL`` and matches nothing; on SQLite writers are serialised.
        """
        result = await self.session.execute(
            update(RefreshToken)
            .where(RefreshToken.id == token_id, RefreshToken.used_at.is_(None))
            .values(used_at=now)
            .execution_options(synchronize_session=False)
        )
        assert isinstance(result, CursorResult)
        return result.rowcount == 1

    async def new_session(self, user_id: int) -> AuthSession:
        ip = current_client_ip()
        auth_session = AuthSession(
            user_id=user_id,
            ip=ip.split("%", 1)[0][:45] if ip else None,  # no IPv6 zone id: it has no bound
            user_agent=current_user_agent(),
            last_used_at=utcnow(),
        )
        self.session.add(auth_session)
        await self.session.flush()
        return auth_session

    async def add_token(self, session_id: int, token_hash: str, expires_at: datetime) -> None:
        self.session.add(
            RefreshToken(session_id=session_id, token_hash=token_hash, expires_at=expires_at)
        )
        await self.session.flush()

    async def reauthenticated_at(self, session_id: int) -> datetime | None:
        """When the session's holder last confirmed it is them through a sign-in provider
        (None: never, or an unknown or signed-out session)."""
        stmt = select(AuthSession.reauthenticated_at).where(
            AuthSession.id == session_id, AuthSession.revoked_at.is_(None)
        )
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def mark_reauthenticated(self, session_id: int, now: datetime) -> bool:
        """Record a confirmation through a provider; False when the session was signed out."""
        result = await self.session.execute(
            update(AuthSession)
            .where(AuthSession.id == session_id, AuthSession.revoked_at.is_(None))
            .values(reauthenticated_at=now)
            .returning(AuthSession.id)
            .execution_options(synchronize_session=False)
        )
        return result.scalar_one_or_none() is not None

    async def active_sessions(self, user_id: int) -> list[AuthSession]:
        """The user's sessions that can still be used: not revoked, with a refresh token that
        has not expired. Most recently used first."""
        live_token = exists().where(
            RefreshToken.session_id == AuthSession.id, RefreshToken.expires_at > utcnow()
        )
        stmt = (
            select(AuthSession)
            .where(AuthSession.user_id == user_id, AuthSession.revoked_at.is_(None), live_token)
            .order_by(
                func.coalesce(AuthSession.last_used_at, AuthSession.created_at).desc(),
                AuthSession.id.desc(),
            )
        )
        return list((await self.session.execute(stmt)).scalars())

    async def revoke_session(self, session_id: int, reason: str) -> None:
        await self._revoke(AuthSession.id == session_id, reason)

    async def revoke_others(self, user_id: int, keep_id: int, reason: str) -> list[int]:
        """Sign out every session of the user but ``keep_id``; the ids signed out."""
        return await self._revoke(
            (AuthSession.user_id == user_id) & (AuthSession.id != keep_id), reason
        )

    async def revoke_all_for_user(self, user_id: int, reason: str) -> None:
        await self._revoke(AuthSession.user_id == user_id, reason)

    async def _revoke(self, where: Any, reason: str) -> list[int]:
        """Sign sessions out; their cached state is evicted when the transaction commits.
        Returns the ids signed out."""
        result = await self.session.execute(
            update(AuthSession)
            .where(where, AuthSession.revoked_at.is_(None))
            .values(revoked_at=utcnow(), revoked_reason=reason)
            .returning(AuthSession.id)
            .execution_options(synchronize_session=False)
        )
        ids = [int(i) for i in result.scalars().all()]
        record_eviction(self.session.info, SESSION, ids)
        return ids
