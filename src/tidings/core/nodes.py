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
is not renewed for :data:`LEASE` (a process killed, a host lost) is free again. A process that
finds its lease taken (it could not renew for that long) leases another one at once and makes
its ids with that. ``TIDINGS_NODE_ID`` set skips all this: then the operator keeps node ids
unique per process (``tidings serve --workers N>1`` refuses it). One-shot commands (``tidings
users``, ``tidings bench seed``) keep a random node id.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
from datetime import datetime, timedelta

import structlog
from sqlalchemy import Integer, String, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Mapped, mapped_column

from tidings.core.db import Base, Database, utcnow
from tidings.core.errors import ConfigurationError
from tidings.core.ids import MAX_NODE, configure_ids

LEASE = timedelta(minutes=10)
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
    """The node id of this process, leased from ``id_nodes`` (see the module's docstring)."""

    def __init__(self, db: Database, holder: str | None = None) -> None:
        self.db = db
        self.holder = holder or holder_name()
        self.node_id: int | None = None

    async def acquire(self) -> int:
        """Lease the node id free the longest and make this process's ids with it; a
        ``ConfigurationError`` when all 1,024 are leased."""
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
        configure_ids(node_id)
        self.node_id = node_id
        log.info("node_id_leased", node_id=node_id, holder=self.holder)
        return node_id

    async def renew(self) -> bool:
        """Extend the lease; False when another process holds the node id now."""
        if self.node_id is None:
            return False
        async with self.db.unit_of_work() as session:
            result = await session.execute(
                update(IdNode)
                .where(IdNode.node_id == self.node_id, IdNode.holder == self.holder)
                .values(leased_until=utcnow() + LEASE)
                .execution_options(synchronize_session=False)
            )
            return bool(getattr(result, "rowcount", 0))

    async def release(self) -> None:
        """Give the node id back (free at once, and the last one the next process takes)."""
        if self.node_id is None:
            return
        async with self.db.unit_of_work() as session:
            await session.execute(
                update(IdNode)
                .where(IdNode.node_id == self.node_id, IdNode.holder == self.holder)
                .values(holder=None, leased_until=utcnow())
                .execution_options(synchronize_session=False)
            )
        self.node_id = None

    async def start(self) -> None:
        """Lease a node id, then keep it in the background. A database that does not answer
        yet does not stop the process (it cannot write anything either): the lease is tried
        again every :data:`RETRY_SECONDS` meanwhile. All 1,024 leased does stop it."""
        try:
            await self.acquire()
        except (SQLAlchemyError, OSError) as exc:
            log.warning("node_id_lease_deferred", error=f"{type(exc).__name__}: {exc}")
        self._stop = asyncio.Event()
        self._task = asyncio.create_task(self.keep(self._stop))

    async def stop(self) -> None:
        """Stop renewing and give the node id back (bounded: a database that hangs costs at
        most :data:`STOP_SECONDS`; the lease then expires by itself)."""
        task = getattr(self, "_task", None)
        if task is None:
            return
        self._stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, STOP_SECONDS)
        try:
            await asyncio.wait_for(self.release(), STOP_SECONDS)
        except (SQLAlchemyError, OSError, TimeoutError) as exc:
            log.warning("node_id_release_failed", node_id=self.node_id, error=str(exc))

    async def keep(self, stop: asyncio.Event, every: float = RENEW_SECONDS) -> None:
        """Renew every ``every`` seconds until ``stop``; lease another node id if this one was
        taken, or one at all if none could be leased yet. A database that does not answer is
        tried again at the next turn."""
        while not stop.is_set():
            wait = every if self.node_id is not None else min(every, RETRY_SECONDS)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=wait)
            if stop.is_set():
                return
            try:
                if self.node_id is None:
                    await self.acquire()
                elif not await self.renew():
                    log.warning("node_id_lease_lost", node_id=self.node_id, holder=self.holder)
                    await self.acquire()
            except (SQLAlchemyError, OSError, ConfigurationError) as exc:
                log.warning("node_id_renewal_failed", node_id=self.node_id, error=str(exc))
