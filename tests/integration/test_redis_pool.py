"""The Redis pool on real Redis: an uncontended checkout skips the library's blocking path, a
contended one waits in it without being overtaken, and a dead idle connection is replaced."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import BlockingConnectionPool, Redis
from redis.exceptions import ConnectionError

from tidings.core.redispool import WaitingPool, connect

REDIS_URL = "redis://127.0.0.1:6379/0"


def _assert_idle(redis: Redis, connections: int) -> None:
    """None in use, ``connections`` back in the pool."""
    pool = redis.connection_pool
    assert len(pool._in_use_connections) == 0  # type: ignore[attr-defined]
    assert len(pool._available_connections) == connections  # type: ignore[attr-defined]


async def _close(redis: Redis) -> None:
    await redis.aclose()
    await redis.connection_pool.disconnect()


@pytest.fixture(params=[WaitingPool, BlockingConnectionPool])
async def small(request: pytest.FixtureRequest) -> AsyncIterator[Redis]:
    """One connection, and a checkout that gives up after 0.5 s: ours, and redis-py's."""
    pool = request.param.from_url(REDIS_URL, max_connections=1, timeout=0.5, socket_timeout=2)
    redis = Redis(connection_pool=pool)
    yield redis
    await _close(redis)


async def test_only_a_contended_checkout_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    waits = 0
    wait = WaitingPool._wait

    async def counted(self: WaitingPool) -> object:
        nonlocal waits
        waits += 1
        return await wait(self)

    monkeypatch.setattr(WaitingPool, "_wait", counted)
    redis = connect(REDIS_URL, max_connections=4)
    try:
        for i in range(20):
            assert await redis.echo(f"hello {i}") == f"hello {i}"
        assert waits == 0
        # four connections busy at once: the other four callers wait for one
        await asyncio.gather(*(redis.blpop(["test:pool:nothing"], timeout=0.05) for _ in range(8)))
        assert waits == 4
        _assert_idle(redis, 4)
    finally:
        await _close(redis)


async def test_a_waiting_caller_is_not_overtaken_by_a_busy_one(small: Redis) -> None:
    """One caller sends commands back to back for longer than the checkout timeout while
    another asks for the only connection. Were the free connection taken by whoever comes
    first, the busy caller would take it back every time and the other would time out."""
    deadline = time.monotonic() + 1.0

    async def busy() -> int:
        sent = 0
        while time.monotonic() < deadline:
            await small.get("test:pool:busy")
            sent += 1
        return sent

    async def waiting() -> float:
        await asyncio.sleep(0.05)  # the busy caller holds the connection by now
        started = time.monotonic()
        await small.get("test:pool:waiting")  # raises ConnectionError after 0.5 s if starved
        return time.monotonic() - started

    busy_task = asyncio.create_task(busy())
    try:
        if isinstance(small.connection_pool, WaitingPool):
            waited = await waiting()
            assert waited < 0.5
            assert await busy_task > 10
        else:  # redis-py's pool starves the waiting caller (why WaitingPool exists)
            with pytest.raises(ConnectionError, match="No connection available"):
                await waiting()
    finally:
        busy_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await busy_task


async def test_many_callers_share_few_connections_without_errors() -> None:
    redis = connect(REDIS_URL, max_connections=2)
    try:
        replies = await asyncio.gather(*(redis.echo(str(i)) for i in range(200)))
        assert replies == [str(i) for i in range(200)]
        _assert_idle(redis, 2)
    finally:
        await _close(redis)


async def test_a_connection_the_server_closed_costs_no_command() -> None:
    redis = connect(REDIS_URL, max_connections=1)
    try:
        client_id = await redis.client_id()
        async with Redis.from_url(REDIS_URL) as admin:
            assert await admin.client_kill_filter(_id=client_id) == 1
        assert await redis.echo("still here") == "still here"
        assert await redis.client_id() != client_id
    finally:
        await _close(redis)


async def test_a_caller_that_gives_up_waiting_passes_no_connection_on() -> None:
    """Callers cancelled or timed out while queued leave the queue; the connection goes to the
    next one still waiting, and is back in the pool at the end."""
    pool = WaitingPool.from_url(REDIS_URL, max_connections=1, timeout=0.3)
    redis = Redis(connection_pool=pool)
    try:
        held = await pool.get_connection()  # the only connection, until released below
        gives_up = asyncio.create_task(redis.echo("timed out"))  # waits 0.3 s, then raises
        cancelled = asyncio.create_task(redis.echo("cancelled"))
        await asyncio.sleep(0.05)
        cancelled.cancel()
        with pytest.raises(asyncio.CancelledError):
            await cancelled
        with pytest.raises(ConnectionError, match="No connection available"):
            await gives_up
        assert not pool._waiters
        patient = asyncio.create_task(redis.echo(b"patient"))
        await asyncio.sleep(0.05)
        await pool.release(held)
        assert await patient == b"patient"
        _assert_idle(redis, 1)
    finally:
        await _close(redis)


async def test_a_caller_queued_during_a_release_gets_the_connection() -> None:
    """The library's release takes the pool's lock: a caller that queues while it waits for
    that lock must still get the connection it puts back."""
    pool = WaitingPool.from_url(REDIS_URL, max_connections=1, timeout=0.5)
    redis = Redis(connection_pool=pool)
    try:
        held = await pool.get_connection()
        async with pool._lock:  # type: ignore[attr-defined]  # as a re-auth or a reconnect would
            releasing = asyncio.create_task(pool.release(held))
            await asyncio.sleep(0.01)
            queued = asyncio.create_task(redis.echo(b"queued"))
            await asyncio.sleep(0.01)
            assert pool._waiters
        await releasing
        assert await queued == b"queued"
        _assert_idle(redis, 1)
    finally:
        await _close(redis)
