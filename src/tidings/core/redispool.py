"""Redis clients on a pool that waits for a connection, first come first served, and hands
out an idle one without ceremony.

Under load a request must wait for a connection rather than fail (a plain pool with
``max_connections`` raises). redis-py's ``BlockingConnectionPool`` waits, but measured here:

* its checkout takes a condition, arms a timeout, records metrics and probes the connection on
  every command: 7 % of a warm feed page's API CPU, more than any other step of the client
  (py-spy, full dataset);
* it is not fair: a caller sending commands back to back gets the connection it just released
  back ahead of the callers already waiting (they re-check after it is taken), which time out
  with "No connection available" while it keeps going
  (tests/integration/test_redis_pool.py shows both pools).

:class:`WaitingPool` takes a free connection directly when nobody waits; otherwise the caller
queues, and a released connection goes to the longest waiting caller. The probe before use
(``ensure_connection``: reconnect a connection the server closed) is the library's.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from typing import Any

from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError


class WaitingPool(ConnectionPool):
    """At most ``max_connections``; a checkout with none free waits up to ``timeout`` seconds
    in a queue (first come, first served), then raises ``ConnectionError``."""

    def __init__(self, *args: Any, timeout: float = 2, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.timeout = timeout
        self._waiters: deque[asyncio.Future[AbstractConnection]] = deque()

    async def get_connection(  # type: ignore[override]
        self, command_name: Any = None, *keys: Any, **options: Any
    ) -> AbstractConnection:
        if not self._waiters and self.can_get_connection():
            connection: AbstractConnection = self.get_available_connection()  # type: ignore[no-untyped-call]
        else:
            connection = await self._wait()
        try:
            await self.ensure_connection(connection)
        except BaseException:
            await self.release(connection)
            raise
        return connection

    async def _wait(self) -> AbstractConnection:
        waiter: asyncio.Future[AbstractConnection] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(self.timeout):
                return await waiter
        except BaseException as exc:
            if waiter.done() and not waiter.cancelled():  # handed one as it gave up: pass it on
                await asyncio.shield(self.release(waiter.result()))
            else:  # out of the queue (a cancelled task has cancelled the future already)
                waiter.cancel()
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
            if isinstance(exc, TimeoutError):
                raise RedisConnectionError("No connection available.") from exc
            raise

    async def release(self, connection: AbstractConnection) -> None:
        """Hand ``connection`` to the longest waiting caller, else back to the pool (the
        library's release: its bookkeeping, reconnect flag and released-connection event)."""
        if self._waiters and connection in self._in_use_connections:
            if connection.should_reconnect():  # type: ignore[no-untyped-call]  # as the library does
                await connection.disconnect()
            if self._hand_over(connection):
                return
        await super().release(connection)  # a connection not in use raises there (KeyError)
        # a caller may have queued while that release waited for the pool's lock
        while self._waiters and self._available_connections:
            spare: AbstractConnection = self.get_available_connection()  # type: ignore[no-untyped-call]
            if not self._hand_over(spare):
                await super().release(spare)
                break

    def _hand_over(self, connection: AbstractConnection) -> bool:
        """Give an in-use connection to the longest waiting caller still waiting, if any."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(connection)  # still in use: now by the waiter, who probes it
                return True
        return False


def waiting_pool(url: str, *, max_connections: int, **options: Any) -> WaitingPool:
    """A :class:`WaitingPool` for ``url``: a checkout waits at most 2 s for a free connection;
    a connect, a read or a write gives up after 1 s (so an outage is noticed quickly and the
    caller falls back)."""
    pool: WaitingPool = WaitingPool.from_url(
        url,
        max_connections=max_connections,
        timeout=2,
        socket_timeout=1,
        socket_connect_timeout=1,
        **options,
    )
    return pool


def connect(url: str, *, max_connections: int) -> Redis:
    """A client (replies decoded to ``str``) on a :func:`waiting_pool`, retrying a command once
    on a lost connection."""
    pool = waiting_pool(
        url, max_connections=max_connections, decode_responses=True, retry=Retry(NoBackoff(), 1)
    )
    return Redis(connection_pool=pool)
