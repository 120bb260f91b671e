"""Fault tests for the async backbone on real PostgreSQL with a real broker (Redis Streams, and
NATS JetStream): workers killed with SIGKILL mid-stream and a broker outage lose nothing and
duplicate nothing.

The broker is a private redis-server or nats-server started on a free loopback port, so
stopping it does not disturb the shared one. Every loop here is bounded in count and time.
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from tests.support.databases import PostgresTemplates, pg_url
from tests.support.processes import free_port
from tests.support.waiting import eventually
from tidings.accounts.models import User
from tidings.auth.policy import Principal, Role
from tidings.core.db import Database
from tidings.events.models import DeadLetter, OutboxMessage
from tidings.notifications.models import NotificationActor, NotificationGroup
from tidings.posts import service as posts
from tidings.posts.models import Post

AUTHORS = 50
LIKERS = 40  # 50 x 40 = 2,000 like events, each must yield one notification actor row
KILLS = 10


class Broker:
    """A throwaway broker server (redis-server, or nats-server with JetStream keeping its
    stream on disk, as deployed) used as the taskiq broker."""

    def __init__(self, workdir: Path, kind: str = "redis") -> None:
        self.kind = kind
        self.port = free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        if self.kind == "nats":
            return f"nats://127.0.0.1:{self.port}"
        return f"redis://127.0.0.1:{self.port}/0"

    def _command(self) -> list[str]:
        if self.kind == "nats":
            binary = shutil.which("nats-server") or shutil.which("nats-server", path="/usr/sbin")
            if binary is None:
                pytest.fail("nats-server is needed for the NATS fault tests")
            store = self.workdir / "jetstream"
            return [binary, "-a", "127.0.0.1", "-p", str(self.port), "-js", "-sd", str(store)]
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is needed for the fault tests")
        return [
            binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.workdir),
        ]

    def start(self) -> None:
        self.proc = subprocess.Popen(  # noqa: S603 - fixed arguments
            self._command(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        pytest.fail("the broker did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=10)
            self.proc = None


class Worker:
    """`tidings worker` as a separate process."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env = env
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        code = "from tidings.cli import app; app(['worker'])"
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module
                [sys.executable, "-c", code], env=self.env, stdout=out, stderr=out
            )

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
            self.proc = None

    def terminate(self) -> bool:
        """SIGTERM; True when the worker was gone within 20 s (grace 2 s, then bounded
        stops), else it is killed (and reaped) and the answer is False."""
        if self.proc is None:
            return True
        proc, self.proc = self.proc, None
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
            return False
        return True

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-2000:]


@pytest.fixture
def postgres_only(postgres_templates: PostgresTemplates) -> PostgresTemplates:
    return postgres_templates


@pytest.fixture
async def fault_db(postgres_only: PostgresTemplates) -> AsyncIterator[str]:
    name = await postgres_only.clone()
    try:
        yield pg_url(name)
    finally:
        await postgres_only.drop_clone(name)


@pytest.fixture(params=["redis", "nats"])
def broker(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Broker]:
    server = Broker(tmp_path, request.param)
    server.start()
    yield server
    server.stop()


def _worker_env(tmp_path: Path, db_url: str, broker: Broker) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")}
    env.update(
        {
            "TIDINGS_DATA_DIR": str(tmp_path / "data"),
            "TIDINGS_DATABASE_URL": db_url,
            "TIDINGS_BROKER": broker.kind,
            "TIDINGS_BROKER_URL": broker.url,
            "TIDINGS_RELAY_POLL_SECONDS": "0.1",
            "TIDINGS_RELAY_REDELIVERY_SECONDS": "3",
            "TIDINGS_CONSUMER_RETRY_BASE_SECONDS": "0.05",
            "TIDINGS_WORKER_GRACE_SECONDS": "2",
            "TIDINGS_LOG_LEVEL": "WARNING",
            "TIDINGS_LOG_FORMAT": "json",
        }
    )
    return env


async def _seed(db: Database) -> tuple[list[int], list[int]]:
    async with db.unit_of_work() as session:
        users = [
            User(
                username=f"u{i}",
                username_key=f"u{i}",
                email=f"u{i}@example.com",
                display_name=f"u{i}",
                role="user",
            )
            for i in range(AUTHORS + LIKERS)
        ]
        session.add_all(users)
        await session.flush()
        authors, likers = users[:AUTHORS], users[AUTHORS:]
        post_rows = [Post(author_id=a.id, text=f"post by {a.username}") for a in authors]
        session.add_all(post_rows)
        await session.flush()
        return [p.id for p in post_rows], [u.id for u in likers]


async def _like_all(
    db: Database, post_ids: list[int], liker_ids: list[int], pause: float = 0.0
) -> None:
    """One transaction per liker (each like writes its outbox event in that transaction)."""
    for liker in liker_ids:
        viewer = Principal(user_id=liker, username=f"liker{liker}", role=Role.USER, session_id=0)
        async with db.unit_of_work() as session:
            for post_id in post_ids:
                await posts.like(session, viewer, post_id)
        if pause:
            await asyncio.sleep(pause)


async def _count(db: Database, stmt: object) -> int:
    async with db.unit_of_work(write=False) as session:
        return int((await session.execute(stmt)).scalar_one())  # type: ignore[call-overload]


async def _assert_exactly_once(db: Database, post_ids: list[int], likers: int) -> None:
    async def drained() -> bool:
        pending = await _count(
            db,
            select(func.count())
            .select_from(OutboxMessage)
            .where(OutboxMessage.published_at.is_(None)),
        )
        return pending == 0

    await eventually(drained, within=300, interval=0.5)
    async with db.unit_of_work(write=False) as session:
        groups = (
            await session.execute(
                select(
                    NotificationGroup.post_id, func.count(), func.sum(NotificationGroup.actor_count)
                )
                .where(NotificationGroup.kind == "like")
                .group_by(NotificationGroup.post_id)
            )
        ).all()
    assert len(groups) == len(post_ids)
    assert all(count == 1 and total == likers for _, count, total in groups), groups
    actors = await _count(db, select(func.count()).select_from(NotificationActor))
    assert actors == len(post_ids) * likers
    assert await _count(db, select(func.count()).select_from(DeadLetter)) == 0


async def test_kill_9_the_worker_ten_times(tmp_path: Path, fault_db: str, broker: Broker) -> None:
    db = Database(fault_db, pool_size=5)
    worker = Worker(_worker_env(tmp_path, fault_db, broker), tmp_path / "worker.log")
    rng = random.Random(7)
    try:
        post_ids, liker_ids = await _seed(db)
        producer = asyncio.create_task(_like_all(db, post_ids, liker_ids, pause=0.05))
        worker.start()
        for _ in range(KILLS):
            await asyncio.sleep(rng.uniform(0.4, 1.2))
            worker.kill()
            worker.start()
        await producer
        await _assert_exactly_once(db, post_ids, len(liker_ids))
    finally:
        stopped = worker.terminate()
        await db.dispose()
    assert stopped, f"the worker ignored SIGTERM for 20 s; its log:\n{worker.log_tail()}"


async def test_broker_outage_during_writes_loses_nothing(
    tmp_path: Path, fault_db: str, broker: Broker
) -> None:
    db = Database(fault_db, pool_size=5)
    worker = Worker(_worker_env(tmp_path, fault_db, broker), tmp_path / "worker.log")
    try:
        post_ids, liker_ids = await _seed(db)
        worker.start()
        await _like_all(db, post_ids, liker_ids[:10])
        broker.stop()
        outage_started = time.monotonic()
        # writes keep succeeding while the broker is down: they only touch the outbox
        await _like_all(db, post_ids, liker_ids[10:30], pause=1.0)
        held = await _count(
            db,
            select(func.count())
            .select_from(OutboxMessage)
            .where(OutboxMessage.published_at.is_(None)),
        )
        assert held > 0
        await asyncio.sleep(max(0.0, 30 - (time.monotonic() - outage_started)))
        broker.start()
        await _like_all(db, post_ids, liker_ids[30:])
        await _assert_exactly_once(db, post_ids, len(liker_ids))
    finally:
        stopped = worker.terminate()
        await db.dispose()
    assert stopped, f"the worker ignored SIGTERM for 20 s; its log:\n{worker.log_tail()}"


async def test_a_worker_started_before_its_broker_waits_for_it(
    tmp_path: Path, fault_db: str, broker: Broker
) -> None:
    """The broker is down when the worker starts: the worker stays up, retrying, and once the
    broker answers it relays and applies every event written meanwhile, exactly once. No
    redelivery within the test: a message published before the consumer group exists would
    be lost to it, and the test would fail rather than be rescued by the relay's second look."""
    db = Database(fault_db, pool_size=5)
    env = _worker_env(tmp_path, fault_db, broker) | {"TIDINGS_RELAY_REDELIVERY_SECONDS": "900"}
    worker = Worker(env, tmp_path / "worker.log")
    broker.stop()
    try:
        post_ids, liker_ids = await _seed(db)
        worker.start()
        await _like_all(db, post_ids, liker_ids[:5])

        async def refused() -> bool:
            return "broker_startup_failed" in worker.log.read_text(errors="replace")

        await eventually(refused, within=60, interval=0.2)
        await asyncio.sleep(1.5)  # a retry or two later
        assert worker.proc is not None
        assert worker.proc.poll() is None, worker.log_tail()  # still running
        broker.start()
        await _assert_exactly_once(db, post_ids, 5)
    finally:
        stopped = worker.terminate()
        await db.dispose()
    assert stopped, f"the worker ignored SIGTERM for 20 s; its log:\n{worker.log_tail()}"


def test_a_worker_whose_broker_never_starts_exits_with_an_error(
    tmp_path: Path, fault_db: str, broker: Broker
) -> None:
    """Past TIDINGS_BROKER_STARTUP_SECONDS without a broker (a wrong host, bad credentials)
    the worker stops trying and exits with status 1, which an orchestrator sees; before, it
    logged a failure each second for ever."""
    broker.stop()
    env = _worker_env(tmp_path, fault_db, broker) | {"TIDINGS_BROKER_STARTUP_SECONDS": "2"}
    worker = Worker(env, tmp_path / "worker.log")
    worker.start()
    assert worker.proc is not None
    try:
        status = worker.proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the worker was still trying after 60 s; its log:\n{worker.log_tail()}")
    finally:
        worker.kill()
    log = worker.log.read_text(errors="replace")
    assert status == 1, log
    assert "broker_startup_failed" in log
    assert "broker_startup_gave_up" in log
    assert "Traceback" not in log
