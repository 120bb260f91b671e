"""Wake every relay the moment events commit, across processes (PostgreSQL ``LISTEN/NOTIFY``).

In one process the unit of work wakes the relay directly after a commit with events. With the
relay in other processes (``tidings worker``, several API workers each relaying), it would only
notice new rows at its next poll (``TIDINGS_RELAY_POLL_SECONDS``). So a transaction that wrote
to the outbox also sends ``NOTIFY tidings_outbox`` (:func:`tidings.core.db.announce_outbox`),
which PostgreSQL delivers at commit (never for a rolled-back transaction, once per transaction
however many events), and every relay listens on a connection of its own. Polling stays: a
lost notification (listener reconnecting, database restart) costs at most one poll interval.
SQLite has no notifications and needs none (one process relays).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import asyncpg
import structlog
from sqlalchemy.engine import make_url

from tidings.core.db import OUTBOX_CHANNEL as CHANNEL

RECONNECT_SECONDS = 2.0

log = structlog.get_logger("tidings.relay")


def listener_dsn(database_url: str) -> str | None:
    """The asyncpg DSN of a PostgreSQL URL; None for other databases."""
    url = make_url(database_url)
    if url.get_backend_name() != "postgresql":
        return None
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


async def listen(dsn: str, on_notify: Callable[[], None], stop: asyncio.Event) -> None:
    """Call ``on_notify`` for every notification until ``stop``; reconnects after failures."""
    while not stop.is_set():
        conn: asyncpg.Connection | None = None
        try:
            conn = await asyncpg.connect(dsn, timeout=5)
            lost = asyncio.Event()
            conn.add_termination_listener(lambda _conn, done=lost: done.set())
            await conn.add_listener(CHANNEL, lambda *_args: on_notify())
            on_notify()  # events committed while we were not listening
            waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(lost.wait())]
            try:
                await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in waiters:
                    waiter.cancel()
        except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
            log.warning("outbox_listener_failed", error=f"{type(exc).__name__}: {exc}")
        finally:
            if conn is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(conn.close(), timeout=2)
        if not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=RECONNECT_SECONDS)
