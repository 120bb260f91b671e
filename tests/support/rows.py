"""Rows written straight through the ORM, for tests below the HTTP API."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import update

from tidings.accounts.models import User
from tidings.auth.models import AuthSession
from tidings.core.container import Container
from tidings.core.db import utcnow


async def make_users(container: Container, *names: str) -> list[int]:
    """Accounts with these names (no password), committed; their ids in order."""
    async with container.db.unit_of_work() as session:
        users = [
            User(username=n, username_key=n, email=f"{n}@example.com", display_name=n)
            for n in names
        ]
        session.add_all(users)
        await session.flush()
        return [u.id for u in users]


async def drop_password(container: Container, user_id: int) -> None:
    """The account as a sign-in provider makes it: no password."""
    async with container.db.unit_of_work() as session:
        await session.execute(update(User).where(User.id == user_id).values(password_hash=None))


async def confirm_holder(container: Container, user_id: int, ago: timedelta | None) -> None:
    """Every session of the account as if its holder confirmed it is them through a sign-in
    provider ``ago`` (POST /api/v1/me/reauthentication/{provider}); None: never."""
    when = None if ago is None else utcnow() - ago
    async with container.db.unit_of_work() as session:
        await session.execute(
            update(AuthSession)
            .where(AuthSession.user_id == user_id)
            .values(reauthenticated_at=when)
        )
