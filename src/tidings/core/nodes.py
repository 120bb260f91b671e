"""The node part of generated ids, leased per process from the database.

A generated id (:mod:`tidings.core.ids`) is unique only while no two processes generating ids
at the same time share a node id: two that do both make ``<millisecond><node>0`` for the first
id of a millisecond, so under load they collide (a primary-key conflict, a failed write). A
node id drawn at random per process is shared by some pair of 40 processes more often than
not (the birthday bound on 1,024 values), and one ``TIDINGS_NODE_ID`` is shared by every
worker of ``tidings serve --workers N``.

So each serving process (each ``tidings serve`` worker, each ``tidings worker``) leases one of
the 1,024 node ids from the ``id_nodes`` table when it starts: the one free the longest, under
a row lock (``SKIP LOCKED`` on PostgreSQL, so processes starting together take different ones).
It renews the lease every :data:`RENEW_SECONDS` and gives it back when it stops; a lease that
is not renewed for :data:`LEASE` (a process killed, a host lost) is free again. A process makes
ids only while its lease is known to hold (up to :data:`MARGIN` before it would expire
unrenewed, on its own monotonic clock): past that, or once it finds the lease taken, its ids
are refused (503) until it has leased a node again. Leases compare each process's own wall
clock with ``leased_until``: a clock far ahead takes live leases early (churn, no duplicate:
its ids are later than any the other made), a clock stepped backwards is not allowed for.
``TIDINGS_NODE_ID`` set skips all this: then the operator keeps node ids unique per process
(``tidings serve --workers N>1`` refuses it). The one-shot commands that write accounts
(``tidings users create-admin`` and ``delete``) lease one for their run (:func:`leased_ids`);
``tidings bench seed`` keeps a random node id (a database of its own).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta

import structlog
from sqlalchemy import Integer, String, select, update
from sqlalchemy.exc import OperationalError, ProgrammingError, SQLAlchemyError
from sqlalchemy.orm import Mapped, mapped_column

from tidings.core.db import Base, Database, utcnow
from tidings.core.errors import ConfigurationError
from tidings.core.ids import MAX_NODE, configure_ids, extend_ids, refuse_ids

LEASE = timedelta(minutes=10)
MARGIN = timedelta(minutes=2)  # ids stop this long before a lease not renewed would expire
RENEW_SECONDS = 60.0
RETRY_SECONDS = 5.0  # no lease yet (the database did not answer at start)
STOP_SECONDS = 5.0
log = structlog.get_logger("tidings.nodes")


class IdNode(Base):
    """One row per node id (0..1023, made by migration 0024): who holds it, until when."""

    __tablename__ = "id_nodes"

    node_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    holder: Mapped[str | None] = mapped_column(String(128), default=None)
    leased_until: Mapped[datetime] = mapped_column()


def holder_name() -> str:
    """This process, as the table shows it: host, pid and a random part (pids are reused)."""
    return f"{socket.gethostname()[:80]}:{os.getpid()}:{secrets.token_hex(4)}"


class NodeLease:
    """The node id of this process, leased from ``id_nodes`` (see the module's docstring).

    Ids are made only while the lease is known to hold: until :data:`LEASE` less
    :data:`MARGIN` after the start of the last transaction that took or renewed it (measured
    on this process's monotonic clock); past that, or once the lease is found taken, ids are
    refused (:class:`~tidings.core.ids.IdsUnavailable`, a 503) until a node is leased again."""

    def __init__(self, db: Database, holder: str | None = None) -> None:
        self.db = db
        self.holder = holder or holder_name()
        self.node_id: int | None = None
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @staticmethod
    def _valid_from(started: float) -> float:
        return started + LEASE.total_seconds() - MARGIN.total_seconds()

    async def acquire(self) -> int:
        """Lease the node id free the longest and make this process's ids with it; a
        ``ConfigurationError`` when all 1,024 are leased, or the table is missing."""
        started = time.monotonic()
        try:
            async with self.db.unit_of_work() as session:
                now = utcnow()
                free = (
                    select(IdNode.node_id)
                    .where(IdNode.leased_until < now)
                    .order_by(IdNode.leased_until, IdNode.node_id)
                    .limit(1)
                    .with_for_update(skip_locked=True)
                )
                node_id = (await session.execute(free)).scalar_one_or_none()
                if node_id is None:
                    raise ConfigurationError(
                        f"every one of the {MAX_NODE + 1} node ids is leased (table id_nodes): "
                        "too many processes, or leases of stopped ones not yet expired "
                        f"({int(LEASE.total_seconds())} s)"
                    )
                await session.execute(
                    update(IdNode)
                    .where(IdNode.node_id == node_id)
                    .values(holder=self.holder, leased_until=now + LEASE)
                )
        except (ProgrammingError, OperationalError) as exc:
            if "id_nodes" in str(exc):  # migrations not applied (TIDINGS_AUTO_MIGRATE off)
                raise ConfigurationError(
                    "table id_nodes is missing: run `tidings migrate` first"
                ) from exc
            raise
        configure_ids(node_id, valid_until=self._valid_from(started))
        self.node_id = node_id
        log.info("node_id_leased", node_id=node_id, holder=self.holder)
        return node_id

    async def renew(self) -> bool:
        """Extend the lease (and how long ids may be made); False when another process holds
        the node id now."""
        if self.node_id is None:
            return False
        started = time.monotonic()
        async with self.db.unit_of_work() as session:
            result = await session.execute(
                update(IdNode)
                .where(IdNode.node_id == self.node_id, IdNode.holder == self.holder)
                .values(leased_until=utcnow() + LEASE)
                .execution_options(synchronize_session=False)
            )
            renewed = bool(getattr(result, "rowcount", 0))
        if renewed:
            extend_ids(self.node_id, self._valid_from(started))
        return renewed

    async def release(self) -> None:
        """Give the node id back (free at once, and the last one the next process takes);
        this process's ids are then made with a random node, as before any lease."""
        configure_ids(None)
        if self.node_id is None:
            return
        node_id, self.node_id = self.node_id, None
        async with self.db.unit_of_work() as session:
            await session.execute(
                update(IdNode)
                .where(IdNode.node_id == node_id, IdNode.holder == self.holder)
                .values(holder=None, leased_until=utcnow())
                .execution_options(synchronize_session=False)
            )

    async def start(self) -> None:
        """Lease a node id, then keep it in the background. Ids are refused until one is
        leased. A database that does not answer yet does not stop the process (it cannot
        write anything either): the lease is tried again with a growing pause (5 s up to a
        minute). All 1,024 leased, or the table missing, does stop it."""
        refuse_ids()
        try:
            await self.acquire()
        except (SQLAlchemyError, OSError) as exc:
            log.warning("node_id_lease_deferred", error=f"{type(exc).__name__}: {exc}")
        self._stop = asyncio.Event()
        self._task = asyncio.create_task(self.keep(self._stop))

    async def stop(self) -> None:
        """Stop renewing and give the node id back (bounded: a database that hangs costs at
        most :data:`STOP_SECONDS`; the lease then expires by itself)."""
        if self._task is None:
            return
        self._stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._task, STOP_SECONDS)
        self._task = None
        try:
            await asyncio.wait_for(self.release(), STOP_SECONDS)
        except (SQLAlchemyError, OSError, TimeoutError) as exc:
            log.warning("node_id_release_failed", error=str(exc))

    async def keep(self, stop: asyncio.Event, every: float = RENEW_SECONDS) -> None:
        """Renew every ``every`` seconds until ``stop``; when the lease was taken, refuse ids
        and lease another node id; when none is leased yet, try again (5 s, doubling up to
        ``every``). Any failure is logged and tried again at the next turn."""
        failures = 0
        while not stop.is_set():
            wait = every if self.node_id is not None else min(every, RETRY_SECONDS * 2**failures)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=wait)
            if stop.is_set():
                return
            try:
                if self.node_id is not None and not await self.renew():
                    log.warning("node_id_lease_lost", node_id=self.node_id, holder=self.holder)
                    self.node_id = None
                    refuse_ids()
                if self.node_id is None:
                    await self.acquire()
                failures = 0
            except Exception as exc:  # never end the task: ids would stop for good
                failures = min(failures + 1, 4)
                log.warning("node_id_renewal_failed", node_id=self.node_id, error=str(exc))


@asynccontextmanager
async def leased_ids(db: Database, node_id: int | None) -> AsyncIterator[None]:
    """A node id for the run of a one-shot command that writes (``tidings users ...``): leased
    and kept like a server's, given back at the end; ``node_id`` (``TIDINGS_NODE_ID``) set
    skips the lease."""
    if node_id is not None:
        configure_ids(node_id)
        yield
        return
    lease = NodeLease(db)
    await lease.start()
    try:
        yield
    finally:
        await lease.stop()
