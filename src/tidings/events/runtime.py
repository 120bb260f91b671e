"""The event runtime: a taskiq broker, the delivery task, the outbox relay and a receiver.

Embedded default: the in-memory broker, with relay and consumers inside the ``tidings serve``
process. Production: Redis Streams, RabbitMQ or NATS JetStream, with ``tidings worker`` running
relay and consumers (any number of workers; the relay claims rows with SKIP LOCKED).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterable
from datetime import timedelta
from typing import Any

import structlog
from taskiq import AsyncBroker, InMemoryBroker
from taskiq.acks import AcknowledgeType
from taskiq.kicker import AsyncKicker
from taskiq.receiver import Receiver

from tidings.core.db import Database
from tidings.events.consumers import ConsumerRegistry
from tidings.events.delivery import RetryPolicy, deliver
from tidings.events.notify import listen, listener_dsn
from tidings.events.relay import OutboxRelay
from tidings.settings import Settings

TASK_NAME = "tidings.deliver_event"
# after the grace period: how long cancelled tasks, then the broker's shutdown, may take each
STOP_SECONDS = 5.0
STARTUP_ATTEMPT_SECONDS = 10.0  # one attempt at a broker's startup
log = structlog.get_logger("tidings.events")


async def cancel_within(
    tasks: Iterable[asyncio.Task[Any]], seconds: float
) -> set[asyncio.Task[Any]]:
    """Cancel ``tasks`` and wait at most ``seconds`` for them; returns those still running (a
    task that ignores its cancellation must not hold a stop for ever)."""
    pending = set(tasks)
    for task in pending:
        task.cancel()
    if not pending:
        return set()
    _done, stuck = await asyncio.wait(pending, timeout=seconds)
    return stuck


def build_broker(settings: Settings) -> AsyncBroker:
    if settings.broker == "memory":
        return InMemoryBroker(max_async_tasks=settings.worker_concurrency)
    url = settings.effective_broker_url
    if settings.broker == "redis":
        from taskiq_redis import RedisStreamBroker

        return RedisStreamBroker(
            url=url,
            queue_name="tidings:events",
            consumer_group_name="tidings",
            idle_timeout=settings.relay_redelivery_seconds * 1000,
            maxlen=1_000_000,
        )
    if settings.broker == "nats":
        return _nats_broker(settings, url)
    from taskiq_aio_pika import AioPikaBroker

    return AioPikaBroker(url=url, queue_name="tidings.events", declare_exchange=True)


NATS_SUBJECT = "tidings.events"
NATS_STREAM = "tidings-events"
NATS_DURABLE = "tidings"


NATS_PUBLISH_SECONDS = 2.0  # a publish the server does not confirm by then has failed


def _nats_broker(settings: Settings, url: str) -> AsyncBroker:
    """NATS JetStream: a work-queue stream (a message is gone once acknowledged, so the stream
    holds only what is not applied yet; capped like the Redis stream, the oldest dropped past
    the cap — the relay publishes anything unapplied again) and one durable pull consumer that
    every worker shares. A message not acknowledged within the redelivery timeout (a worker
    killed mid-task, or a task that runs longer) is delivered again; consumers apply each event
    once whatever the broker does. A stream or consumer made before with other settings is
    reused as it is (NATS keeps the first stream's limits; the consumer's are updated).

    taskiq-nats's pull broker, with three changes: each startup makes a fresh client (one
    reused after a failed or cut connection keeps every server it was given again, so each
    attempt added to the next); the first connection gives up after one retry (an error the
    runtime logs and retries each second) and the connection, once made, is restored for ever;
    a publish fails at once while the client is disconnected (the relay keeps the row and
    tries again) instead of holding the relay's transaction for the client's timeout."""
    from nats.aio.client import Client
    from nats.js.api import (
        AckPolicy,
        ConsumerConfig,
        DiscardPolicy,
        RetentionPolicy,
        StorageType,
        StreamConfig,
    )
    from taskiq import BrokerMessage
    from taskiq_nats import PullBasedJetStreamBroker

    class JetStreamBroker(PullBasedJetStreamBroker):
        async def startup(self) -> None:
            previous, self.client = self.client, Client()  # type: ignore[misc]
            with contextlib.suppress(Exception):
                await previous.close()
            await super().startup()
            self.client.options["max_reconnect_attempts"] = -1  # connected: reconnect for ever

        async def kick(self, message: BrokerMessage) -> None:
            if not self.client.is_connected:
                raise ConnectionError("NATS is not connected")
            await self.js.publish(
                self.subject,
                payload=message.message,
                headers=message.labels,
                timeout=NATS_PUBLISH_SECONDS,
            )

    async def logged(exc: Exception) -> None:
        log.warning("broker_error", broker="nats", error=f"{type(exc).__name__}: {exc}")

    return JetStreamBroker(
        servers=[server.strip() for server in url.split(",") if server.strip()],
        subject=NATS_SUBJECT,
        stream_name=NATS_STREAM,
        durable=NATS_DURABLE,
        stream_config=StreamConfig(
            name=NATS_STREAM,
            subjects=[NATS_SUBJECT],
            retention=RetentionPolicy.WORK_QUEUE,
            storage=StorageType.FILE,
            max_msgs=1_000_000,
            discard=DiscardPolicy.OLD,
        ),
        consumer_config=ConsumerConfig(
            durable_name=NATS_DURABLE,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=float(settings.relay_redelivery_seconds),
        ),
        pull_consume_batch=10,
        pull_consume_timeout=1.0,
        connect_timeout=2,
        reconnect_time_wait=1,
        max_reconnect_attempts=1,  # the first connection; then for ever (startup above)
        error_cb=logged,
    )


class EventRuntime:
    def __init__(
        self, settings: Settings, db: Database, registry: ConsumerRegistry, context: Any
    ) -> None:
        self.settings = settings
        self.db = db
        self.registry = registry
        self.context = context
        self.policy = RetryPolicy(
            max_attempts=settings.consumer_max_attempts,
            base_delay=settings.consumer_retry_base_seconds,
        )
        self.broker = build_broker(settings)
        self.broker.register_task(self._delivery_task(), task_name=TASK_NAME)
        self._kicker: AsyncKicker[Any, Any] = AsyncKicker(TASK_NAME, self.broker, labels={})
        self.relay = OutboxRelay(
            db,
            registry,
            self._publish,
            redelivery_after=timedelta(seconds=settings.relay_redelivery_seconds),
        )
        self._stop = asyncio.Event()
        self._finish = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.started = False  # start() has run (with a production broker: attempts began)
        self.broker_up = False
        # set when a process that may not live without its broker (``tidings worker``) has
        # tried to start it for ``broker_startup_seconds`` in vain
        self.gave_up = asyncio.Event()

    async def _publish(self, consumer: str, event_id: int) -> None:
        await self._kicker.kiq(consumer, event_id)

    def _delivery_task(self) -> Callable[[str, int], Awaitable[None]]:
        async def deliver_event(consumer: str, event_id: int) -> None:
            await deliver(self.db, self.registry, consumer, event_id, self.context, self.policy)

        return deliver_event

    def wake(self) -> None:
        """A transaction with events committed: run the relay now rather than at the next poll."""
        self.relay.wake.set()

    @property
    def embedded(self) -> bool:
        return isinstance(self.broker, InMemoryBroker)

    async def start(self, *, relay: bool, consume: bool, give_up: bool = False) -> None:
        """Start the relay and the consumers. A production broker that does not answer yet
        does not stop the process at once: it is started again each second in the
        background, and the relay and the consumers begin once it answers (events stay due
        in the outbox meanwhile: a relay publishing before the startup could add messages a
        Redis Streams consumer group declared afterwards never sees).

        With ``give_up`` (a worker, which does nothing without its broker) the attempts stop
        after ``broker_startup_seconds`` and :attr:`gave_up` is set, so the process can exit
        with an error an orchestrator sees (wrong credentials, wrong host) rather than log a
        failure each second for ever. An API process keeps trying: its writes only need the
        outbox."""
        self.broker.is_worker_process = consume
        self.started = True
        deadline = time.monotonic() + self.settings.broker_startup_seconds if give_up else None
        if self.embedded:
            await self.broker.startup()
            up = True
        else:
            up = await self._start_broker(deadline)
        self.broker_up = up
        if relay:
            for loop in self.registry.loops.values():  # they do not use the broker
                self._tasks.append(asyncio.create_task(loop(self._stop, self.context)))
        if up:
            self._run(relay=relay, consume=consume)
        else:
            self._tasks.append(asyncio.create_task(self._start_later(relay, consume, deadline)))
        log.info("events_started", broker=self.settings.broker, relay=relay, consume=consume)

    def _run(self, *, relay: bool, consume: bool) -> None:
        """The relay (and its wake-ups from other processes) and the consumers, on a started
        broker."""
        if relay:
            self._tasks.append(
                asyncio.create_task(self.relay.run(self._stop, self.settings.relay_poll_seconds))
            )
            dsn = listener_dsn(self.db.url)
            if dsn is not None:  # commits in other processes wake this relay at once
                self._tasks.append(asyncio.create_task(listen(dsn, self.wake, self._stop)))
        if consume and not self.embedded:
            self._tasks.append(asyncio.create_task(self._consume()))

    async def _start_later(self, relay: bool, consume: bool, deadline: float | None) -> None:
        """Start the broker again each second until it answers, then run (not once told to
        stop: :meth:`stop` waits for the tasks it saw, so none may start after it). Past
        ``deadline`` (monotonic), give up: :attr:`gave_up` is set."""
        while not self._stop.is_set():
            if deadline is not None and time.monotonic() >= deadline:
                log.error(
                    "broker_startup_gave_up",
                    broker=self.settings.broker,
                    seconds=self.settings.broker_startup_seconds,
                )
                self.gave_up.set()
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=1.0)
            if not self._stop.is_set() and await self._start_broker(deadline):
                self.broker_up = True
                if not self._stop.is_set():
                    self._run(relay=relay, consume=consume)
                return

    async def _start_broker(self, deadline: float | None = None) -> bool:
        """One attempt at the broker's startup; False (logged) when it fails, after closing
        what the attempt opened (a failed attempt each second must not leak connections). An
        attempt lasts at most :data:`STARTUP_ATTEMPT_SECONDS` (a host that drops packets would
        otherwise hold it for minutes), and never past ``deadline``, nor past :meth:`stop`."""
        limit = STARTUP_ATTEMPT_SECONDS
        if deadline is not None:
            limit = max(0.1, min(limit, deadline - time.monotonic()))
        attempt = asyncio.create_task(self.broker.startup())
        stopping = asyncio.create_task(self._stop.wait())
        try:
            done, _ = await asyncio.wait(
                {attempt, stopping}, timeout=limit, return_when=asyncio.FIRST_COMPLETED
            )
            if attempt not in done:
                attempt.cancel()
                await asyncio.gather(attempt, return_exceptions=True)
                raise TimeoutError(f"no answer within {limit:.1f} s")
            attempt.result()
        except Exception as exc:
            log.warning("broker_startup_failed", error=f"{type(exc).__name__}: {exc}")
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.broker.shutdown(), STOP_SECONDS)
            return False
        finally:
            stopping.cancel()
        return True

    async def _consume(self) -> None:
        """Listen until told to finish; a broker that goes away is reconnected to (messages
        not acknowledged meanwhile are redelivered, and the relay republishes lost ones)."""
        while not self._finish.is_set():
            receiver = Receiver(
                self.broker,
                run_startup=False,
                max_async_tasks=self.settings.worker_concurrency,
                ack_type=AcknowledgeType.WHEN_SAVED,
                propagate_exceptions=False,
            )
            try:
                await receiver.listen(self._finish)
            except Exception as exc:
                log.warning("receiver_failed", error=f"{type(exc).__name__}: {exc}")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._finish.wait(), timeout=1.0)
                # a broker that came back empty (Redis without persistence) has lost its
                # consumer group: start up again to declare it
                await self._start_broker()

    async def stop(self, grace_seconds: float = 10.0) -> None:
        """Stop taking work, let the jobs in hand finish within the grace period; what is not
        finished is not acknowledged, so the broker (or the relay) delivers it again."""
        self._stop.set()
        self._finish.set()
        if self._tasks:
            _done, pending = await asyncio.wait(self._tasks, timeout=grace_seconds)
            stuck = await cancel_within(pending, STOP_SECONDS)
            if stuck:
                log.warning("events_tasks_stuck", count=len(stuck))
            for task in self._tasks:  # retrieved, so none is logged as never retrieved
                if task.done() and not task.cancelled():
                    task.exception()
        if isinstance(self.broker, InMemoryBroker):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.broker.wait_all(), grace_seconds)
        shutdown = asyncio.create_task(self.broker.shutdown())
        done, _pending = await asyncio.wait([shutdown], timeout=STOP_SECONDS)
        if done:
            if shutdown.exception() is not None:  # e.g. it never started: nothing to close
                log.warning("broker_shutdown_failed", error=repr(shutdown.exception()))
        else:  # left running: it may not even honour a cancellation
            shutdown.cancel()
            log.warning("broker_shutdown_timeout", seconds=STOP_SECONDS)
        log.info("events_stopped")
