"""Queries on users."""

from __future__ import annotations

from datetime import datetime
from functools import cache
from typing import NamedTuple

from sqlalchemy import ColumnElement, Select, String, bindparam, or_, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from tidings.accounts.models import User
from tidings.core import rawsql
from tidings.core.errors import Conflict
from tidings.graph.repository import unblocked_with


class UserRef(NamedTuple):
    """What deciding whether someone may be seen needs of them (a read-only page's lookup)."""

    id: int
    suspended: bool
    deleted_at: datetime | None


@cache
def _ref_by_username() -> Select[int, bool, datetime | None]:
    key = bindparam("key", type_=String)
    return select(User.id, User.suspended, User.deleted_at).where(User.username_key == key)


class UserRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, user_id: int) -> User | None:
        return await self.session.get(User, user_id)

    async def by_prefix(
        self, prefix: str, after: str | None, limit: int, viewer_id: int | None
    ) -> list[User]:
        """Visible accounts whose username starts with ``prefix`` (lower-cased, of the
        username alphabet), in username order after ``after``: a range of ``username_key``,
        which ``ix_users_username_key_prefix`` serves (on PostgreSQL with text_pattern_ops:
        byte order, whatever the collation)."""
        upper = prefix[:-1] + chr(ord(prefix[-1]) + 1)  # [a-z0-9_]: the next byte is no letter
        key = User.username_key
        postgres = self.session.get_bind().dialect.name == "postgresql"
        bounds: list[ColumnElement[bool]]
        if postgres:  # the operators of the index's text_pattern_ops: byte order
            bounds = [key.op("~>=~")(prefix), key.op("~<~")(upper)]
            if after is not None:
                bounds.append(key.op("~>~")(after))
        else:
            bounds = [key >= prefix, key < upper]
            if after is not None:
                bounds.append(key > after)
        stmt = (
            select(User)
            .where(*bounds, User.deleted_at.is_(None), User.suspended.is_(False))
            # in the index's (byte) order, so PostgreSQL walks it from the prefix on
            .order_by(text("users.username_key USING ~<~") if postgres else key)
            .limit(limit + 1)
        )
        stmt = stmt.where(unblocked_with(viewer_id, User.id))
        return list((await self.session.scalars(stmt)).all())

    async def get_for_update(self, user_id: int) -> User | None:
        return await self.session.get(User, user_id, with_for_update=True)

    async def by_username(self, username: str, *, for_update: bool = False) -> User | None:
        stmt = select(User).where(User.username_key == username.lower())
        if for_update:
            stmt = stmt.with_for_update()
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def ref_by_username(self, username: str) -> UserRef | None:
        """:meth:`by_username`'s id, suspension and deletion, on the driver
        (:mod:`tidings.core.rawsql`): no ORM object, and no transaction opened for a read-only
        page."""
        rows = await rawsql.fetch(self.session, _ref_by_username(), {"key": username.lower()})
        return UserRef(int(rows[0][0]), bool(rows[0][1]), rows[0][2]) if rows else None

    async def by_login(self, login: str) -> User | None:
        """A user by username or email, both case-insensitive."""
        key = login.strip().lower()
        stmt = select(User).where(or_(User.username_key == key, User.email == key))
        return (await self.session.execute(stmt)).scalars().first()

    async def email_taken(self, email: str, *, besides: int) -> bool:
        """Whether an account other than ``besides`` has the (normalised) address."""
        stmt = select(User.id).where(User.email == email, User.id != besides).limit(1)
        return (await self.session.execute(stmt)).first() is not None

    async def taken(self, username: str, email: str) -> str | None:
        stmt = select(User.username_key, User.email).where(
            or_(User.username_key == username.lower(), User.email == email)
        )
        for username_key, _existing_email in (await self.session.execute(stmt)).all():
            return "username" if username_key == username.lower() else "email"
        return None

    async def page(self, limit: int, before_id: int | None, role: str | None) -> list[User]:
        """Newest first, keyset on the primary key; fetches ``limit + 1`` to see a next page.
        Deleted accounts are not listed."""
        stmt = (
            select(User).where(User.deleted_at.is_(None)).order_by(User.id.desc()).limit(limit + 1)
        )
        if before_id is not None:
            stmt = stmt.where(User.id < before_id)
        if role is not None:
            stmt = stmt.where(User.role == role)
        return list((await self.session.execute(stmt)).scalars())

    async def add(self, user: User) -> User:
        """Insert, turning a lost uniqueness race into a 409 (inside a savepoint, so the
        surrounding transaction survives)."""
        try:
            async with self.session.begin_nested():
                self.session.add(user)
        except IntegrityError as exc:
            raise Conflict("That username or email is already registered.") from exc
        return user
