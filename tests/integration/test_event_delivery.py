"""Outbox relay → broker → consumer: at-least-once delivery, exactly-once effect, retries and
dead letters — on the in-memory broker and on real Redis Streams, RabbitMQ and NATS JetStream."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections import Counter
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from tests.support.waiting import eventually
from tidings.core.container import Container
from tidings.events import delivery, domain
from tidings.events import runtime as runtime_module
from tidings.events.consumers import ConsumerRegistry, Envelope
from tidings.events.delivery import apply_once, consumers_done
from tidings.events.models import DeadLetter, OutboxMessage, ProcessedEvent
from tidings.events.outbox import record
from tidings.events.runtime import EventRuntime
from tidings.settings import Settings

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _runtime(container: Container, registry: ConsumerRegistry, **overrides: Any) -> EventRuntime:
    settings = Settings(
        **{
            **container.settings.model_dump(),
            "relay_poll_seconds": 0.05,
            "consumer_retry_base_seconds": 0.01,
            **overrides,
        }
    )
    return EventRuntime(settings, container.db, registry, container)


async def _emit(container: Container, count: int) -> list[int]:
    async with container.db.unit_of_work() as session:
        for i in range(count):
            record(session, domain.UserFollowed(user_id=i + 1, target_user_id=10_000 + i))
        await session.flush()
        rows = await session.execute(select(OutboxMessage.id).order_by(OutboxMessage.id))
        return [r[0] for r in rows]


async def _count(container: Container, model: Any, **where: Any) -> int:
    async with container.db.unit_of_work() as session:
        stmt = select(func.count()).select_from(model)
        for name, value in where.items():
            stmt = stmt.where(getattr(model, name) == value)
        return int((await session.execute(stmt)).scalar_one())


async def test_each_event_applied_once_even_when_published_twice(container: Container) -> None:
    seen: Counter[int] = Counter()

    async def handler(session: AsyncSession, env: Envelope, ctx: Any) -> None:
        seen[env.id] += 1

    registry = ConsumerRegistry()
    registry.add("counter", ["user.followed"], handler)
    runtime = _runtime(container, registry)
    ids = await _emit(container, 25)
    await runtime.start(relay=False, consume=True)
    try:
        assert await runtime.relay.run_once() == 25
        for event_id in ids[:10]:  # a broker redelivery, or a relay that crashed after publish
            await runtime._publish("counter", event_id)
        await runtime.broker.wait_all()  # type: ignore[attr-defined]
        assert seen == Counter({i: 1 for i in ids})
        assert await _count(container, ProcessedEvent, consumer="counter") == 25
        assert await runtime.relay.run_once() == 0  # now all done: rows get marked published
        async with container.db.unit_of_work() as session:
            pending = await session.execute(
                select(func.count())
                .select_from(OutboxMessage)
                .where(OutboxMessage.published_at.is_(None))
            )
            assert pending.scalar_one() == 0
    finally:
        await runtime.stop(2)


async def test_failing_consumer_retries_then_dead_letters(container: Container) -> None:
    attempts: Counter[int] = Counter()

    async def flaky(session: AsyncSession, env: Envelope, ctx: Any) -> None:
        attempts[env.id] += 1
        if env.aggregate_id % 2 == 0 or attempts[env.id] < 3:
            raise RuntimeError("downstream unavailable")

    registry = ConsumerRegistry()
    registry.add("flaky", ["user.followed"], flaky)
    runtime = _runtime(container, registry, consumer_max_attempts=4)
    ids = await _emit(container, 4)  # targets 10000..10003: two always fail
    await runtime.start(relay=True, consume=True)
    try:

        async def settled() -> bool:
            done = await _count(container, ProcessedEvent, consumer="flaky")
            return done + await _count(container, DeadLetter) == len(ids)

        await eventually(settled)
        assert await _count(container, ProcessedEvent, consumer="flaky") == 2
        assert await _count(container, DeadLetter, consumer="flaky") == 2
        assert all(n in (3, 4) for n in attempts.values()), attempts
    finally:
        await runtime.stop(2)


async def test_crash_between_commit_and_publish_still_delivers(container: Container) -> None:
    """The write committed, the process died before the relay ran: a fresh relay delivers."""
    seen: list[int] = []

    async def handler(session: AsyncSession, env: Envelope, ctx: Any) -> None:
        seen.append(env.id)

    ids = await _emit(container, 3)  # committed, never published
    registry = ConsumerRegistry()
    registry.add("late", ["user.followed"], handler)
    runtime = _runtime(container, registry)
    await runtime.start(relay=True, consume=True)
    try:

        async def delivered() -> bool:
            return sorted(seen) == ids

        await eventually(delivered)
    finally:
        await runtime.stop(2)


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)  # SQLite: one writer at a time
async def test_the_last_of_two_concurrent_consumers_marks_the_event_published(
    container: Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both consumers are inside their transactions when they check who else is done: the one
    that commits second must still see the first's marker and mark the row published, rather
    than leave it for the relay's next look (the redelivery timeout, 30 s by default)."""
    inside = asyncio.Barrier(2)
    looked, both_looked = 0, asyncio.Event()

    async def handler(session: AsyncSession, env: Envelope, ctx: Any) -> None:
        await asyncio.wait_for(inside.wait(), 10)  # both markers written, neither committed

    async def look_then_linger(session: AsyncSession, ids: list[int]) -> set[tuple[int, str]]:
        # hold the first look's transaction open until the second has looked too (bounded:
        # where the second waits for the first to commit, it cannot look meanwhile)
        nonlocal looked
        done = await consumers_done(session, ids)
        looked += 1
        if looked == 2:
            both_looked.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(both_looked.wait(), 1.0)
        return done

    monkeypatch.setattr(delivery, "consumers_done", look_then_linger)

    registry = ConsumerRegistry()
    registry.add("one", ["user.followed"], handler)
    registry.add("two", ["user.followed"], handler)
    (event_id,) = await _emit(container, 1)
    applied = await asyncio.gather(
        *(apply_once(container.db, registry, name, event_id, None) for name in ("one", "two"))
    )
    assert applied == [True, True]
    async with container.db.unit_of_work() as session:
        row = await session.get(OutboxMessage, event_id)
        assert row is not None
        assert row.published_at is not None


@pytest.mark.parametrize("broker", ["redis", "rabbitmq", "nats"])
async def test_real_brokers_deliver_exactly_once(
    container: Container, backend: str, broker: str
) -> None:
    if backend == "sqlite":
        pytest.skip("broker tests run on PostgreSQL")
    seen: Counter[int] = Counter()

    async def handler(session: AsyncSession, env: Envelope, ctx: Any) -> None:
        seen[env.id] += 1

    registry = ConsumerRegistry()
    registry.add("counter", ["user.followed"], handler)
    runtime = _runtime(container, registry, broker=broker)
    ids = await _emit(container, 40)
    try:
        await runtime.start(relay=True, consume=True)
    except Exception as exc:
        if IN_CI:
            raise
        pytest.skip(f"{broker} unreachable: {exc}")
    try:

        async def delivered() -> bool:
            return await _count(container, ProcessedEvent, consumer="counter") == len(ids)

        await eventually(delivered, within=30)
        assert seen == Counter({i: 1 for i in ids})
    finally:
        await runtime.stop(5)


async def test_stop_is_bounded_when_a_task_or_the_broker_hangs(
    container: Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGTERM must end a worker: past the grace period a task that ignores its cancellation,
    and a broker whose shutdown hangs, hold the stop for STOP_SECONDS each at most."""
    monkeypatch.setattr(runtime_module, "STOP_SECONDS", 0.3)
    runtime = _runtime(container, ConsumerRegistry())
    await runtime.start(relay=True, consume=True)
    release = asyncio.Event()

    async def stubborn() -> None:
        while not release.is_set():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(0.05)

    async def hanging_shutdown() -> None:
        await asyncio.sleep(60)

    task = asyncio.create_task(stubborn())
    runtime._tasks.append(task)
    shutdown = runtime.broker.shutdown
    monkeypatch.setattr(runtime.broker, "shutdown", hanging_shutdown)
    started = asyncio.get_running_loop().time()
    try:
        await runtime.stop(grace_seconds=0.1)
        elapsed = asyncio.get_running_loop().time() - started
        assert not task.done()  # it really ignored the cancellation
    finally:  # whatever happened, the stubborn task ends (it would hold the loop's close)
        release.set()
        await task
        await shutdown()
    assert elapsed < 0.1 + 2 * 0.3 + 0.5


async def test_a_broker_that_never_answers_is_given_up_on_time(
    container: Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A broker address that accepts connections and then says nothing (a host that drops
    packets behaves alike): each startup attempt is cut off, and a worker's runtime gives up
    once TIDINGS_BROKER_STARTUP_SECONDS have passed, rather than hang in its first attempt."""
    monkeypatch.setattr(runtime_module, "STARTUP_ATTEMPT_SECONDS", 0.5)
    monkeypatch.setattr(runtime_module, "STOP_SECONDS", 0.3)
    held: list[asyncio.StreamWriter] = []

    async def silent(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)  # keep the connection open, answer nothing

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    runtime = _runtime(
        container,
        ConsumerRegistry(),
        broker="redis",
        broker_url=f"redis://127.0.0.1:{port}/0",
        broker_startup_seconds=1.5,
    )
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        await asyncio.wait_for(runtime.start(relay=True, consume=True, give_up=True), 5)
        assert runtime.started
        assert not runtime.broker_up
        await asyncio.wait_for(runtime.gave_up.wait(), 10)
        assert loop.time() - started < 1.5 + 0.5 + 2.0
    finally:
        await runtime.stop(0.5)
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()
