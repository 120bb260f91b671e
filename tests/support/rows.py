"""Rows written straight through the ORM, for tests below the HTTP API."""

from __future__ import annotations

from datetime import timedelta

import httpx2
from sqlalchemy import update

from tests.support.api import DEFAULT_PASSWORD, SignedIn
from tidings.accounts.erasure import erase_account
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


async def delete_and_erase(
    client: httpx2.AsyncClient, container: Container, user: SignedIn
) -> None:
    """The user deletes their account (``DELETE /api/v1/me``), then its erasure is run here to
    the end (bounded: a test account has a few rows; each call erases up to 25)."""
    gone = await client.request(
        "DELETE", "/api/v1/me", json={"password": DEFAULT_PASSWORD}, headers=user.headers
    )
    assert gone.status_code == 202, gone.text
    for _ in range(20):
        if await erase_account(container.db, int(user.user_id), batch=5, max_batches=5):
            return
    raise AssertionError("the erasure did not finish")
