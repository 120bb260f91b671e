"""A commit with events wakes relays in other processes at once (PostgreSQL LISTEN/NOTIFY),
instead of at their next poll; a rolled-back transaction wakes nobody."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from tidings.core.container import Container
from tidings.core.db import Database
from tidings.events import domain
from tidings.events.consumers import ConsumerRegistry, Envelope
from tidings.events.notify import listen, listener_dsn
from tidings.events.outbox import record
from tidings.events.runtime import EventRuntime
from tidings.settings import Settings

pytestmark = pytest.mark.parametrize("backend", ["postgres"])


async def _fail_after_recording(container: Container) -> None:
    async with container.db.unit_of_work() as session:
        record(session, domain.UserFollowed(user_id=1, target_user_id=2))
        await session.flush()
        raise RuntimeError("the request failed")


async def test_notifications_arrive_at_commit_and_never_for_a_rollback(
    container: Container,
) -> None:
    dsn = listener_dsn(container.db.url)
    assert dsn is not None
    woken = asyncio.Event()
    stop = asyncio.Event()
    task = asyncio.create_task(listen(dsn, woken.set, stop))
    try:
        await asyncio.wait_for(woken.wait(), 5)  # the wake-up on (re)connecting
        woken.clear()
        with pytest.raises(RuntimeError):
            await _fail_after_recording(container)
        await asyncio.sleep(0.5)
        assert not woken.is_set()  # rolled back: no notification
        async with container.db.unit_of_work() as session:
            record(session, domain.UserFollowed(user_id=1, target_user_id=3))
        await asyncio.wait_for(woken.wait(), 5)
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)


async def test_a_relay_in_another_process_publishes_without_waiting_for_its_poll(
    container: Container,
) -> None:
    """The worker's relay polls every 30 s; the API's commit still reaches it at once. (Two
    Database objects: the writer's engine and the worker's share nothing but PostgreSQL.)"""
    seen: list[float] = []

    async def handler(session: AsyncSession, env: Envelope, ctx: Any) -> None:
        seen.append(time.monotonic())

    registry = ConsumerRegistry()
    registry.add("stopwatch", ["user.followed"], handler)
    settings = Settings(**{**container.settings.model_dump(), "relay_poll_seconds": 30})
    worker_db = Database(container.db.url, pool_size=2)
    runtime = EventRuntime(settings, worker_db, registry, container)
    await runtime.start(relay=True, consume=True)
    try:
        await asyncio.sleep(0.5)  # the relay's first pass is done; it now waits 30 s
        committed = time.monotonic()
        async with container.db.unit_of_work() as session:
            record(session, domain.UserFollowed(user_id=1, target_user_id=4))
        for _ in range(100):  # bounded: 5 s
            if seen:
                break
            await asyncio.sleep(0.05)
        assert seen, "not delivered within 5 s: the relay was not woken"
        assert seen[0] - committed < 5
    finally:
        await runtime.stop(2)
        await worker_db.dispose()
