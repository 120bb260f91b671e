"""The unit of work on real databases: commit on success, roll back on error, and the request-level
unit of work's ``keep_changes`` exception (SQLite and PostgreSQL)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any, cast

import pytest
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request

from tidings.accounts.models import User
from tidings.app import create_app
from tidings.core.container import Container
from tidings.core.db import Database, _write_intent
from tidings.core.deps import get_session
from tidings.core.errors import AppError, Conflict, OAuthError


class Boom(Exception):
    pass


@pytest.fixture
async def db(container: Container) -> AsyncIterator[Database]:
    try:
        yield container.db
    finally:
        await container.db.dispose()


def _user(name: str | None = None) -> User:
    name = name or f"u_{uuid.uuid4().hex[:10]}"
    return User(username=name, username_key=name.lower(), email=f"{name.lower()}@example.com")


async def _exists(db: Database, username: str) -> bool:
    async with db.unit_of_work(write=False) as session:
        stmt = select(func.count()).select_from(User).where(User.username_key == username.lower())
        return (await session.execute(stmt)).scalar_one() == 1


async def _write_then_raise(db: Database, user: User) -> None:
    async with db.unit_of_work() as session:
        session.add(user)
        await session.flush()
        found = await session.execute(select(User.id).where(User.id == user.id))
        assert found.scalar_one() == user.id  # it was written inside the transaction
        raise Boom


async def test_unit_of_work_that_raises_rolls_back(db: Database) -> None:
    user = _user()
    with pytest.raises(Boom):
        await _write_then_raise(db, user)
    assert not await _exists(db, user.username)


async def test_unit_of_work_that_returns_commits(db: Database) -> None:
    user = _user()
    async with db.unit_of_work() as session:
        session.add(user)
    assert await _exists(db, user.username)
    async with db.unit_of_work(write=False) as session:
        stored = await session.get(User, user.id)
        assert stored is not None
        assert stored.role == "user"
        assert stored.suspended is False
        assert stored.created_at.tzinfo is not None


async def test_unit_of_work_restores_write_intent(db: Database) -> None:
    assert _write_intent.get() is False
    async with db.unit_of_work(write=True):
        assert _write_intent.get() is True
    with pytest.raises(Boom):
        async with db.unit_of_work(write=True):
            raise Boom
    assert _write_intent.get() is False


async def _change_then_raise(db: Database, kept: User, dropped: User) -> None:
    async with db.unit_of_work() as session:
        session.add(dropped)
        await session.flush()
        stored = await session.get(User, kept.id)
        assert stored is not None
        stored.display_name = "changed then rolled back"
        await session.flush()
        raise Boom


async def test_a_failed_unit_of_work_leaves_earlier_ones_alone(db: Database) -> None:
    kept, dropped = _user(), _user()
    async with db.unit_of_work() as session:
        session.add(kept)
    with pytest.raises(Boom):
        await _change_then_raise(db, kept, dropped)
    assert await _exists(db, kept.username)
    assert not await _exists(db, dropped.username)
    async with db.unit_of_work(write=False) as session:
        stored = await session.get(User, kept.id)
        assert stored is not None
        assert stored.display_name == ""


# --- the request-level unit of work (tidings.core.deps.get_session) ----------------------------


@pytest.fixture
def app(container: Container) -> FastAPI:
    return create_app(container.settings, container)


def _request(app: FastAPI, method: str = "POST") -> Request:
    scope: dict[str, Any] = {
        "type": "http",
        "method": method,
        "scheme": "http",
        "path": "/test",
        "raw_path": b"/test",
        "query_string": b"",
        "headers": [],
        "server": ("testserver", 80),
        "app": app,
    }
    return Request(scope)


def _unit(app: FastAPI, method: str = "POST") -> AsyncGenerator[AsyncSession, None]:
    """The request's unit of work, driven by hand the way FastAPI drives a yield dependency."""
    return cast(AsyncGenerator[AsyncSession, None], get_session(_request(app, method)))


async def _fail_request(app: FastAPI, db: Database, error: BaseException) -> str:
    """Run get_session the way FastAPI does when the route raises ``error`` after a write."""
    unit = _unit(app)
    session = await anext(unit)
    user = _user()
    session.add(user)
    await session.flush()
    with pytest.raises(type(error)):
        await unit.athrow(error)
    return user.username


async def test_request_unit_of_work_commits_when_the_route_returns(
    app: FastAPI, db: Database
) -> None:
    unit = _unit(app)
    session = await anext(unit)
    assert _write_intent.get() is True  # POST is a write
    user = _user()
    session.add(user)
    with pytest.raises(StopAsyncIteration):
        await anext(unit)
    assert _write_intent.get() is False
    assert await _exists(db, user.username)


async def test_request_unit_of_work_reads_without_write_intent(app: FastAPI, db: Database) -> None:
    unit = _unit(app, "GET")
    session = await anext(unit)
    assert _write_intent.get() is False
    assert (await session.execute(select(func.count()).select_from(User))).scalar_one() >= 0
    with pytest.raises(StopAsyncIteration):
        await anext(unit)


async def test_plain_app_error_rolls_back(app: FastAPI, db: Database) -> None:
    username = await _fail_request(app, db, Conflict("nope"))
    assert not await _exists(db, username)


async def test_app_error_with_keep_changes_commits(app: FastAPI, db: Database) -> None:
    username = await _fail_request(app, db, Conflict("kept", keep_changes=True))
    assert await _exists(db, username)


async def test_oauth_error_with_keep_changes_commits(app: FastAPI, db: Database) -> None:
    error = OAuthError("invalid_grant", "reused", keep_changes=True)
    assert isinstance(error, AppError)
    username = await _fail_request(app, db, error)
    assert await _exists(db, username)


async def test_unexpected_error_rolls_back(app: FastAPI, db: Database) -> None:
    username = await _fail_request(app, db, Boom("unexpected"))
    assert not await _exists(db, username)
    assert _write_intent.get() is False
