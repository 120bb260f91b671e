"""Rows written straight through the ORM, for tests below the HTTP API."""

from __future__ import annotations

from tidings.accounts.models import User
from tidings.core.container import Container


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
