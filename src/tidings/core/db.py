"""Database engine, sessions and the unit of work.

The unit of work is the only code that commits. On SQLite, write transactions start with
``BEGIN IMMEDIATE`` so that concurrent writers queue on the database lock instead of failing
half-way; reads use a plain deferred ``BEGIN`` and never block in WAL mode.
"""

from __future__ import annotations

import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import BigInteger, DateTime, MetaData, event, inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.types import TypeDecorator
from sqlalchemy.util import await_

from tidings.core.cache import after_commit, after_rollback

_write_intent: ContextVar[bool] = ContextVar("tidings_write_intent", default=False)

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on both PostgreSQL and SQLite."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {int: BigInteger, datetime: UTCDateTime}


def utcnow() -> datetime:
    return datetime.now(UTC)


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def _install_sqlite_hooks(engine: AsyncEngine) -> None:
    sync_engine = engine.sync_engine

    @event.listens_for(sync_engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we emit BEGIN ourselves, below
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=15000")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(sync_engine, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if _write_intent.get() else "BEGIN")


def create_engine(
    url: str, *, pool_size: int = 10, echo: bool = False, pool_timeout: float = 30
) -> AsyncEngine:
    if is_sqlite(url):
        engine = create_async_engine(
            url, echo=echo, pool_size=pool_size, max_overflow=0, pool_timeout=60
        )
        _install_sqlite_hooks(engine)
        return engine
    engine = create_async_engine(
        url,
        echo=echo,
        pool_size=pool_size,
        # No overflow: an overflow connection is closed as soon as it is handed back while the
        # pool is full, so under steady load past pool_size every request opened and closed
        # one (a PostgreSQL backend forked and torn down each time: measured, 30 % of the feed's
        # throughput at 16 connections on one process). A request past pool_size waits for a
        # connection instead (pool_timeout). Requests hold one connection at a time.
        max_overflow=0,
        # Short OLTP queries: JIT compilation costs more than it saves (measured 1.7 s vs 40 ms
        # on the feed), and generic plans for prepared statements ignore the bound values (a
        # viewer with many follows read them all). Both settings are per connection.
        connect_args={"server_settings": {"jit": "off", "plan_cache_mode": "force_custom_plan"}},
        pool_timeout=pool_timeout,  # then sqlalchemy.exc.TimeoutError: a 503 (core.problems)
    )
    event.listen(engine.sync_engine, "checkout", _ping_on_checkout)
    return engine


def _ping_on_checkout(dbapi_conn: Any, _record: Any, _proxy: Any) -> None:
    """Pessimistic disconnect handling in one round trip. SQLAlchemy's ``pool_pre_ping`` on
    asyncpg costs three per checkout (``BEGIN``, ``;``, ``ROLLBACK``, for pgbouncer's
    transaction mode); a simple-protocol ``SELECT 1`` is one, and prepares nothing, so it is as
    safe behind pgbouncer. A connection the server closed (a restart) is known without asking.
    ``DisconnectionError`` makes the pool drop the connection and check out a fresh one."""
    driver = dbapi_conn.driver_connection
    if driver.is_closed():
        raise DisconnectionError("connection closed by the server")
    # a connection left on generic plans (core.rawsql) gets its custom plans back; the SET is
    # the ping then
    query = CUSTOM_PLANS if driver in ON_GENERIC_PLANS else "SELECT 1"
    try:
        await_(driver.execute(query))
    except Exception as exc:  # any failure means: do not use this connection
        raise DisconnectionError(str(exc)) from exc
    ON_GENERIC_PLANS.discard(driver)


# Plans of prepared statements (PostgreSQL). Connections start on custom plans (see
# ``server_settings`` above): a plan made for the bound values, which a statement like the pull
# feed needs. The cost is planning on every execution, ≈1.3 ms of server CPU for the feed's
# candidate filter and ≈0.8 ms for the viewer's relations to a page, where a plan made once
# does as well (primary-key probes). ``core.rawsql.fetch(..., generic=True)`` switches a
# connection to generic plans outside transactions (a session-level SET that a rollback
# cannot undo); the next checkout switches it back. The driver connections switched now:
ON_GENERIC_PLANS: weakref.WeakSet[Any] = weakref.WeakSet()
CUSTOM_PLANS = "SET plan_cache_mode = force_custom_plan"
GENERIC_PLANS = "SET plan_cache_mode = force_generic_plan"


OUTBOX_CHANNEL = "tidings_outbox"


async def announce_outbox(session: AsyncSession) -> None:
    """Before the commit of a transaction that staged events (``session.info["outbox"]``):
    ``NOTIFY`` the relays of every process, delivered by PostgreSQL at commit
    (:mod:`tidings.events.notify`). Nothing on SQLite, where one process relays."""
    if session.info.get("outbox") and session.get_bind().dialect.name == "postgresql":
        await session.execute(text(f"NOTIFY {OUTBOX_CHANNEL}"))


async def commit(session: AsyncSession) -> None:
    """End a unit of work that succeeded: ``NOTIFY`` the relays (delivered at commit), commit,
    then evict the cached rows it changed. Every unit of work commits through here."""
    await announce_outbox(session)
    await session.commit()
    await after_commit(session)


async def rollback(session: AsyncSession) -> None:
    await session.rollback()
    after_rollback(session)


class _Session(AsyncSession):
    async def close(self) -> None:
        await super().close()
        # A session is a reference cycle (with its transactions and event dispatch): it waits
        # for the cyclic GC, and so would every row left in its ``info`` (a feed page's cached
        # posts and authors, tidings.core.collector). Emptied, they go at once.
        self.info.clear()


class Database:
    """Owns the engine and hands out units of work."""

    def __init__(
        self, url: str, *, pool_size: int = 10, echo: bool = False, pool_timeout: float = 30
    ) -> None:
        self.url = url
        self.engine = create_engine(url, pool_size=pool_size, echo=echo, pool_timeout=pool_timeout)
        self.sessions = async_sessionmaker[AsyncSession](
            self.engine, class_=_Session, expire_on_commit=False, autoflush=True
        )

    @property
    def is_sqlite(self) -> bool:
        return is_sqlite(self.url)

    @asynccontextmanager
    async def unit_of_work(self, *, write: bool = True) -> AsyncIterator[AsyncSession]:
        """A session in one transaction: committed on success, rolled back on any error."""
        token = _write_intent.set(write)
        try:
            async with self.sessions() as session:
                try:
                    yield session
                except BaseException:
                    await rollback(session)
                    raise
                await commit(session)
        finally:
            _write_intent.reset(token)

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        await self.engine.dispose()


async def insert_ignore(
    session: AsyncSession, model: type[Base], values: dict[str, Any], conflict: list[str]
) -> bool:
    """``INSERT ... ON CONFLICT DO NOTHING``; True when a row was inserted.

    Python-side column defaults (ids, timestamps) are applied as for any insert. On PostgreSQL
    a concurrent insert of the same key waits for the first transaction and then does nothing.
    """
    dialect = session.get_bind().dialect.name
    insert: Any
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    table = model.__table__
    first_pk = next(iter(inspect(model).primary_key))
    stmt = (
        insert(table)
        .values(**values)
        .on_conflict_do_nothing(index_elements=conflict)
        .returning(first_pk)
    )
    result = await session.execute(stmt)
    return result.first() is not None
