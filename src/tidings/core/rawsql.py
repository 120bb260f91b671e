"""Hot read statements straight on the driver, for the request paths that run on every page.

SQLAlchemy costs ≈0.5 ms of CPU to execute a built, cached statement (ORM and Core layers,
result processing, a greenlet hop; measured on the feed's candidate filter) where a statement
on asyncpg alone costs ≈0.12 ms, and every ``IN`` list of
a different length is a new SQL text, so asyncpg re-prepares it (an extra round trip and a
parse and plan in PostgreSQL). On PostgreSQL :func:`fetch` therefore compiles a statement once
into SQL whose ``IN`` lists are ``= ANY($n)`` arrays (one text whatever the lengths, prepared
once per connection) and runs it on the asyncpg connection under the session, so it shares
the session's transaction when one is open (and starts none when it is not, like any read).
On SQLite (aiosqlite) :func:`fetch` does the same with ``IN (SELECT value FROM json_each(?))``
for the lists, and runs the statement with one ``execute_fetchall`` on the session's aiosqlite
connection — one hand-off to its thread instead of four (cursor, execute, fetch, close) — then
applies the columns' result processors, so the rows are what the session would have returned.
:func:`fetch_dicts` (row-cache misses, with JSON and time columns) goes through the session
there.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql import ClauseElement, Executable
from sqlalchemy.sql.compiler import SQLCompiler

from tidings.core.db import CUSTOM_PLANS, GENERIC_PLANS, ON_GENERIC_PLANS

_POSTCOMPILE = re.compile(r"(NOT )?IN \(__\[POSTCOMPILE_(\w+)\]\)")
_NUMBERED = re.compile(r"\$(\d+)")
_IN_JSON = "IN (SELECT value FROM json_each(?))"  # SQLite: one list parameter as a JSON array
_NOT_IN_JSON = "NOT " + _IN_JSON
_DRIVER = "tidings.rawsql.driver"  # session.info: (the transaction, its driver connection)


@dataclass(frozen=True)
class _Prepared:
    sql: str
    names: tuple[str, ...]  # the parameter behind $1, $2, ...
    defaults: Mapping[str, Any]  # literal values bound when the statement was built
    processors: Mapping[str, Any]


def _compile(stmt: Executable, dialect: Dialect) -> SQLCompiler:
    assert isinstance(stmt, ClauseElement)
    compiled = stmt.compile(dialect=dialect)
    assert isinstance(compiled, SQLCompiler)
    return compiled


@lru_cache(maxsize=512)  # statements built once: keyed by the object itself
def _prepare(stmt: Executable, dialect: Dialect) -> _Prepared:
    compiled = _compile(stmt, dialect)
    positions = list(compiled.positiontup or ())
    expanding = {name for name in positions if f"__[POSTCOMPILE_{name}]" in compiled.string}
    names = [name for name in positions if name not in expanding]
    numbered = sorted({int(n) for n in _NUMBERED.findall(compiled.string)})
    if numbered != list(range(1, len(names) + 1)):
        raise ValueError(f"unexpected parameter numbering in {compiled.string!r}")
    arrays: dict[str, int] = {}

    def as_array(match: re.Match[str]) -> str:
        name = match.group(2)
        if name not in arrays:
            arrays[name] = len(names) + len(arrays) + 1
        operator = "<> ALL" if match.group(1) else "= ANY"
        return f"{operator}(${arrays[name]})"

    sql = _POSTCOMPILE.sub(as_array, compiled.string)
    if "__[POSTCOMPILE_" in sql:
        raise ValueError(f"an expanding parameter this module cannot rewrite: {sql!r}")
    prepared = _Prepared(
        sql=sql,
        names=(*names, *arrays),
        defaults={name: compiled.binds[name].value for name in (*names, *arrays)},
        processors=dict(compiled._bind_processors),
    )
    return prepared


def _value(prepared: _Prepared | _SqlitePrepared, name: str, params: Mapping[str, Any]) -> Any:
    value = params[name] if name in params else prepared.defaults[name]
    processor = prepared.processors.get(name)
    if processor is None or value is None:
        return value
    if isinstance(value, list | tuple):
        return [processor(item) for item in value]
    return processor(value)


async def _driver_connection(session: AsyncSession) -> Any:
    """The driver's own connection under the session, as ``session.execute`` would use it:
    pending objects flushed first (checked cheaply: a flush with nothing to do still costs a
    greenlet hop), the session's transaction begun if need be."""
    if session.autoflush and (session.new or session.dirty or session.deleted):
        await session.flush()
    transaction = session.sync_session.get_transaction()
    cached = session.info.get(_DRIVER)
    if cached is not None and transaction is not None and cached[0] is transaction:
        return cached[1]  # the same transaction holds the same connection: no greenlet hop
    connection = await session.connection()
    driver = (await connection.get_raw_connection()).driver_connection
    session.info[_DRIVER] = (session.sync_session.get_transaction(), driver)
    return driver


async def _on_asyncpg(
    session: AsyncSession,
    dialect: Dialect,
    stmt: Executable,
    params: Mapping[str, Any],
    generic: bool = False,
) -> list[Any]:
    prepared = _prepare(stmt, dialect)
    driver = await _driver_connection(session)
    args = [_value(prepared, name, params) for name in prepared.names]
    await _plans(driver, generic)
    return await driver.fetch(prepared.sql, *args)  # type: ignore[no-any-return]


async def _plans(driver: Any, generic: bool) -> None:
    """Put the connection on the plans the statement wants (:data:`db.ON_GENERIC_PLANS`).
    Generic only outside a transaction, where the SET cannot be rolled back behind our back;
    back to custom at once, and remembered as switched until a SET outside one."""
    switched = driver in ON_GENERIC_PLANS
    if generic == switched:
        return
    in_transaction = driver.is_in_transaction()
    if generic:
        if not in_transaction:
            await driver.execute(GENERIC_PLANS)
            ON_GENERIC_PLANS.add(driver)
        return
    await driver.execute(CUSTOM_PLANS)
    if not in_transaction:
        ON_GENERIC_PLANS.discard(driver)


@dataclass(frozen=True)
class _SqlitePrepared:
    sql: str
    names: tuple[str, ...]  # the parameter behind each ``?``, in order
    lists: frozenset[str]  # those bound as a JSON array (an ``IN`` list)
    defaults: Mapping[str, Any]
    processors: Mapping[str, Any]
    results: tuple[Any, ...]  # a result processor per column, or None


@lru_cache(maxsize=512)  # statements built once: keyed by the object itself
def _prepare_sqlite(stmt: Executable, dialect: Dialect) -> _SqlitePrepared:
    compiled = _compile(stmt, dialect)
    names = tuple(compiled.positiontup or ())
    lists = frozenset(name for name in names if f"__[POSTCOMPILE_{name}]" in compiled.string)

    def as_json_list(match: re.Match[str]) -> str:
        return _NOT_IN_JSON if match.group(1) else _IN_JSON

    sql = _POSTCOMPILE.sub(as_json_list, compiled.string)
    if "__[POSTCOMPILE_" in sql or sql.count("?") != len(names):
        raise ValueError(f"a statement this module cannot rewrite: {sql!r}")
    return _SqlitePrepared(
        sql=sql,
        names=names,
        lists=lists,
        defaults={name: compiled.binds[name].value for name in names},
        processors=dict(compiled._bind_processors),
        results=tuple(
            column[3]._cached_result_processor(dialect, None) for column in compiled._result_columns
        ),
    )


async def _on_aiosqlite(
    session: AsyncSession, dialect: Dialect, stmt: Executable, params: Mapping[str, Any]
) -> list[tuple[Any, ...]]:
    prepared = _prepare_sqlite(stmt, dialect)
    driver = await _driver_connection(session)
    args = [
        json.dumps(list(value)) if name in prepared.lists else value
        for name in prepared.names
        for value in (_value(prepared, name, params),)
    ]
    rows = await driver.execute_fetchall(prepared.sql, args)
    results = prepared.results
    if not any(results):
        return [tuple(row) for row in rows]
    return [
        tuple(value if fn is None else fn(value) for fn, value in zip(results, row, strict=True))
        for row in rows
    ]


async def fetch(
    session: AsyncSession, stmt: Executable, params: Mapping[str, Any], *, generic: bool = False
) -> Sequence[Sequence[Any]]:
    """The rows of ``stmt`` (a statement built once, with bound parameters) as tuples.
    ``generic``: on PostgreSQL, a plan made once serves every execution (outside transactions;
    for statements whose best plan does not depend on the values, such as primary-key probes),
    instead of planning anew each time (:data:`tidings.core.db.ON_GENERIC_PLANS`)."""
    dialect = session.get_bind().dialect
    if dialect.driver == "asyncpg":
        return await _on_asyncpg(session, dialect, stmt, params, generic)
    if dialect.driver == "aiosqlite":
        return await _on_aiosqlite(session, dialect, stmt, params)
    return (await session.execute(stmt, params)).all()


async def fetch_dicts(
    session: AsyncSession, stmt: Executable, params: Mapping[str, Any], *, generic: bool = False
) -> list[dict[str, Any]]:
    """The rows of ``stmt`` as ``{column name: value}``. On asyncpg, values are what asyncpg
    decodes (JSON decoded by the engine's codec, ``timestamptz`` as aware UTC datetimes): use
    it for plain columns, not for types whose result processing matters. Elsewhere through the
    session."""
    dialect = session.get_bind().dialect
    if dialect.driver == "asyncpg":
        rows = await _on_asyncpg(session, dialect, stmt, params, generic)
        return [dict(record) for record in rows]
    return [dict(row._mapping) for row in (await session.execute(stmt, params)).all()]
