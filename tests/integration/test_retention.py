"""Data retention on real databases: exactly the intended rows go, every protected row stays,
batches are bounded, concurrent pruners are harmless, refresh-token reuse is still detected,
the background loop survives failures, and ``tidings prune`` prints what it did."""

from __future__ import annotations

import asyncio
import itertools
import os
import secrets
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx2
import pytest
from sqlalchemy import event, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from typer.testing import CliRunner

from tests.conftest import make_settings
from tests.support.api import sign_up
from tidings.accounts.models import User
from tidings.auth.models import AuthSession, RefreshToken
from tidings.cli import app as cli_app
from tidings.core.db import Base, Database, utcnow
from tidings.events.models import DeadLetter, IdempotencyRecord, OutboxMessage, ProcessedEvent
from tidings.events.registry import build_registry
from tidings.mail.models import OutgoingMail
from tidings.notifications.models import NotificationActor, NotificationGroup
from tidings.recovery.models import EmailToken
from tidings.retention import service
from tidings.retention.repository import RULES
from tidings.settings import Settings, get_settings
from tidings.webhooks.models import DeliveryStatus, WebhookDelivery, WebhookSubscription

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)
TABLES = [rule.name for rule in RULES]


def ago(days: float = 0, hours: float = 0) -> datetime:
    return NOW - timedelta(days=days, hours=hours)


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url, pool_size=5)
    yield database
    await database.dispose()


def retention_settings(tmp_path: Path, database_url: str, **overrides: object) -> Settings:
    return make_settings(tmp_path / "data", database_url, **overrides)


@dataclass
class Seeded:
    """Primary keys per table: those the pass must delete and those it must keep."""

    gone: dict[str, set[Any]] = field(default_factory=lambda: {t: set() for t in TABLES})
    kept: dict[str, set[Any]] = field(default_factory=lambda: {t: set() for t in TABLES})


def _user(name: str) -> User:
    return User(username=name, username_key=name, email=f"{name}@example.com")


async def _seed_everything(db: Database) -> Seeded:
    """Rows of every kind, old and new, in every state; defaults: events 7 d, webhooks 30 d,
    notifications 90 d, idempotency keys 24 h."""
    s = Seeded()
    async with db.unit_of_work(write=True) as session:
        alice, bob = _user("alice"), _user("bob")
        session.add_all([alice, bob])
        await session.flush()

        # -- outbox, consumer markers, dead letters ------------------------------------------
        def outbox(published: datetime | None, created: datetime) -> OutboxMessage:
            row = OutboxMessage(
                event_type="post.liked",
                aggregate_id=1,
                payload={},
                created_at=created,
                published_at=published,
            )
            session.add(row)
            return row

        old_published = outbox(ago(8), ago(8))
        new_published = outbox(ago(1), ago(9))
        never_published = outbox(None, ago(30))  # stuck: the relay still owes it
        with_pending_letter = outbox(ago(8), ago(9))
        with_replayed_letter = outbox(ago(8), ago(9))
        await session.flush()
        s.gone["outbox"] |= {old_published.id, with_replayed_letter.id}
        s.kept["outbox"] |= {new_published.id, never_published.id, with_pending_letter.id}

        def marker(event_id: int, processed: datetime, consumer: str = "notifications") -> None:
            session.add(
                ProcessedEvent(consumer=consumer, event_id=event_id, processed_at=processed)
            )

        marker(old_published.id, ago(8))
        marker(old_published.id, ago(8), "webhooks")
        marker(with_replayed_letter.id, ago(8))
        marker(123_456, ago(8))  # its outbox row is long gone
        s.gone["processed_events"] |= {
            ("notifications", old_published.id),
            ("webhooks", old_published.id),
            ("notifications", with_replayed_letter.id),
            ("notifications", 123_456),
        }
        marker(new_published.id, ago(8))  # the event's other consumer finished only yesterday
        marker(never_published.id, ago(20))  # a redelivery can still come
        marker(with_pending_letter.id, ago(8))  # a replay would redeliver to the others
        marker(654_321, ago(1))  # row gone, but the marker is recent
        s.kept["processed_events"] |= {
            ("notifications", new_published.id),
            ("notifications", never_published.id),
            ("notifications", with_pending_letter.id),
            ("notifications", 654_321),
        }

        def letter(event_id: int, replayed: datetime | None) -> DeadLetter:
            row = DeadLetter(
                event_id=event_id,
                consumer="webhooks",
                event_type="post.liked",
                error="boom",
                attempts=5,
                created_at=ago(20),
                replayed_at=replayed,
            )
            session.add(row)
            return row

        pending_letter = letter(with_pending_letter.id, None)
        old_replay = letter(with_replayed_letter.id, ago(8))
        recent_replay = letter(new_published.id, ago(1))
        await session.flush()
        s.gone["dead_letters"].add(old_replay.id)
        s.kept["dead_letters"] |= {pending_letter.id, recent_replay.id}

        # -- idempotency keys (24 h) ---------------------------------------------------------
        for key, created in (("expired", ago(hours=25)), ("fresh", ago(hours=23))):
            session.add(
                IdempotencyRecord(
                    user_id=alice.id, key=key, fingerprint="f" * 64, created_at=created
                )
            )
        s.gone["idempotency_keys"].add((alice.id, "expired"))
        s.kept["idempotency_keys"].add((alice.id, "fresh"))

        # -- webhook deliveries (30 d) -------------------------------------------------------
        hook = WebhookSubscription(
            url="https://hooks.example.com/x", event_types=["*"], secret_encrypted="x"
        )
        session.add(hook)
        await session.flush()
        event_ids = itertools.count(1_000)

        def delivery(status: DeliveryStatus, last: datetime | None) -> WebhookDelivery:
            row = WebhookDelivery(
                subscription_id=hook.id,
                event_id=next(event_ids),
                event_type="post.liked",
                message_id="msg",
                payload="{}",
                status=status.value,
                attempts=0 if last is None else 3,
                last_attempt_at=last,
                next_attempt_at=None if status != DeliveryStatus.PENDING else ago(-1),
                created_at=ago(60),
            )
            session.add(row)
            return row

        done_old = [
            delivery(DeliveryStatus.DELIVERED, ago(31)),
            delivery(DeliveryStatus.DEAD, ago(31)),
        ]
        done_recent = delivery(DeliveryStatus.DELIVERED, ago(29))
        retrying = delivery(DeliveryStatus.PENDING, ago(60))  # still on its retry schedule
        waiting = delivery(DeliveryStatus.PENDING, None)
        await session.flush()
        s.gone["webhook_deliveries"] |= {d.id for d in done_old}
        s.kept["webhook_deliveries"] |= {done_recent.id, retrying.id, waiting.id}

        # -- sessions and refresh tokens -----------------------------------------------------
        def auth_session(revoked: datetime | None, used: datetime | None = None) -> AuthSession:
            row = AuthSession(
                user_id=alice.id,
                created_at=ago(40),
                revoked_at=revoked,
                last_used_at=used or ago(1),
            )
            session.add(row)
            return row

        active, revoked_spent, revoked_live, revoked_empty = (
            auth_session(None),
            auth_session(ago(10)),
            auth_session(ago(10)),
            auth_session(ago(2)),
        )
        # never signed out: left unused for longer than a refresh token lives (30 days) and an
        # hour, or used last just before its current token was issued (last_used_at lags)
        left_spent, left_empty, left_live = (
            auth_session(None, ago(31, hours=1)),
            auth_session(None, ago(35)),
            auth_session(None, ago(31)),
        )
        await session.flush()
        s.gone["auth_sessions"] |= {revoked_spent.id, revoked_empty.id, left_spent.id}
        s.gone["auth_sessions"] |= {left_empty.id}
        s.kept["auth_sessions"] |= {active.id, revoked_live.id, left_live.id}

        def token(owner: AuthSession, expires: datetime, used: datetime | None) -> RefreshToken:
            row = RefreshToken(
                session_id=owner.id,
                token_hash=os.urandom(16).hex(),
                created_at=expires - 30 * DAY,
                expires_at=expires,
                used_at=used,
            )
            session.add(row)
            return row

        expired = [
            token(active, ago(1), ago(20)),  # rotated, then expired
            token(active, ago(0, hours=1), None),  # never used, expired an hour ago
            token(revoked_spent, ago(3), ago(25)),
            token(left_spent, ago(1), None),
        ]
        live = [
            token(active, ago(-1), ago(20)),  # rotated a while ago: a replay must be caught
            token(active, ago(-29), None),  # the current token
            token(revoked_live, ago(-5), None),
            token(left_live, ago(0, hours=-1), None),  # issued 30 days less an hour ago
        ]
        await session.flush()
        s.gone["refresh_tokens"] |= {t.id for t in expired}
        s.kept["refresh_tokens"] |= {t.id for t in live}

        # -- notifications (90 d) ------------------------------------------------------------
        def group(read: datetime | None, key: str | None) -> NotificationGroup:
            row = NotificationGroup(
                recipient_id=alice.id,
                kind="like",
                group_key=key,
                created_at=ago(200),
                last_event_at=ago(200),
                read_at=read,
            )
            session.add(row)
            return row

        read_long_ago = group(ago(91), None)
        read_lately = group(ago(89), None)
        unread_old = group(None, "like:1")
        await session.flush()
        session.add(NotificationActor(group_id=read_long_ago.id, actor_id=bob.id))
        session.add(NotificationActor(group_id=unread_old.id, actor_id=bob.id))
        s.gone["notification_groups"].add(read_long_ago.id)
        s.kept["notification_groups"] |= {read_lately.id, unread_old.id}

        # -- mailed one-time tokens (their expiry), mail given up on (30 d) -------------------
        def token(expires: datetime, used: datetime | None = None) -> EmailToken:
            row = EmailToken(
                user_id=alice.id,
                purpose="password_reset",
                token_hash=secrets.token_hex(32),
                email="alice@example.com",
                created_at=expires - timedelta(minutes=30),
                expires_at=expires,
                used_at=used,
            )
            session.add(row)
            return row

        expired_token = token(ago(hours=1))
        used_expired = token(ago(hours=2), used=ago(hours=2, days=0.01))
        live_token = token(NOW + timedelta(minutes=10))
        await session.flush()
        s.gone["email_tokens"] |= {expired_token.id, used_expired.id}
        s.kept["email_tokens"].add(live_token.id)

        def mail(created: datetime, next_attempt: datetime | None) -> OutgoingMail:
            row = OutgoingMail(
                to_address="alice@example.com",
                subject="s",
                body="",
                created_at=created,
                next_attempt_at=next_attempt,
                attempts=8 if next_attempt is None else 1,
            )
            session.add(row)
            return row

        failed_long_ago = mail(ago(31), None)
        failed_lately = mail(ago(29), None)
        still_trying = mail(ago(40), ago(1))
        await session.flush()
        s.gone["outgoing_mail"].add(failed_long_ago.id)
        s.kept["outgoing_mail"] |= {failed_lately.id, still_trying.id}
    return s


async def _keys(session: AsyncSession, table: str) -> set[Any]:
    rule = next(r for r in RULES if r.name == table)
    rows = (await session.execute(select(*rule.keys))).all()
    return {row[0] if len(rule.keys) == 1 else tuple(row) for row in rows}


async def test_prune_deletes_exactly_what_retention_allows(
    db: Database, tmp_path: Path, database_url: str
) -> None:
    settings = retention_settings(tmp_path, database_url)
    seeded = await _seed_everything(db)
    assert await service.preview(db, settings, NOW) == {
        t: len(ids) for t, ids in seeded.gone.items()
    }

    counts = await service.prune(db, settings, NOW)

    assert counts == {t: len(ids) for t, ids in seeded.gone.items()}
    async with db.unit_of_work(write=False) as session:
        for table in TABLES:
            assert await _keys(session, table) == seeded.kept[table], table
        # the read group's actors went with it; the unread group's stayed
        actors = await session.execute(select(func.count()).select_from(NotificationActor))
        assert actors.scalar_one() == 1
    assert await service.prune(db, settings, NOW) == dict.fromkeys(TABLES, 0)


def _count_deletes(db: Database, table: str) -> list[int]:
    """Rows deleted by each ``DELETE FROM <table>`` statement the engine runs."""
    seen: list[int] = []

    @event.listens_for(db.engine.sync_engine, "after_cursor_execute")
    def _after(conn: Any, cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().upper().startswith(f"DELETE FROM {table.upper()} "):
            seen.append(cursor.rowcount)

    return seen


async def _old_published(db: Database, n: int) -> None:
    async with db.unit_of_work(write=True) as session:
        session.add_all(
            OutboxMessage(
                event_type="post.liked",
                aggregate_id=i,
                payload={},
                created_at=ago(9),
                published_at=ago(8),
            )
            for i in range(n)
        )


async def _count(db: Database, model: type[Base]) -> int:
    async with db.unit_of_work(write=False) as session:
        return int((await session.execute(select(func.count()).select_from(model))).scalar_one())


async def test_batches_are_bounded_and_the_rest_waits_for_the_next_pass(
    db: Database, tmp_path: Path, database_url: str
) -> None:
    settings = retention_settings(
        tmp_path, database_url, retention_batch=7, retention_max_batches=5
    )
    statements = _count_deletes(db, "outbox")
    await _old_published(db, 30)
    assert (await service.prune(db, settings, NOW))["outbox"] == 30
    assert statements == [7, 7, 7, 7, 2]  # one bounded statement (and transaction) per batch
    assert await _count(db, OutboxMessage) == 0

    statements.clear()
    await _old_published(db, 50)
    assert await service.preview(db, settings, NOW) == {**dict.fromkeys(TABLES, 0), "outbox": 35}
    assert (await service.prune(db, settings, NOW))["outbox"] == 35  # 5 batches, then it stops
    assert statements == [7] * 5
    assert await _count(db, OutboxMessage) == 15
    assert (await service.prune(db, settings, NOW))["outbox"] == 15
    assert await _count(db, OutboxMessage) == 0


async def test_concurrent_pruners_are_harmless(
    db: Database, tmp_path: Path, database_url: str
) -> None:
    settings = retention_settings(
        tmp_path, database_url, retention_batch=10, retention_max_batches=1000
    )
    await _old_published(db, 300)
    async with db.unit_of_work(write=True) as session:
        session.add(OutboxMessage(event_type="post.liked", aggregate_id=0, payload={}))
    passes = await asyncio.gather(*(service.prune(db, settings, NOW) for _ in range(4)))
    passes.append(await service.prune(db, settings, NOW))  # whatever a skipped lock left over
    assert sum(p["outbox"] for p in passes) == 300
    assert await _count(db, OutboxMessage) == 1  # the unpublished row


async def test_refresh_token_reuse_is_still_detected_after_a_prune(
    client: httpx2.AsyncClient, settings: Settings, container: Any
) -> None:
    """A rotated (used) token outlives every pass until it expires, so presenting it again
    still revokes the whole family."""
    alice = await sign_up(client, "alice")
    rotated = await client.post(
        "/api/v1/auth/token",
        data={"grant_type": "refresh_token", "refresh_token": alice.refresh_token},
    )
    assert rotated.status_code == 200, rotated.text
    later = utcnow() + timedelta(days=settings.refresh_token_ttl_seconds // 86_400 - 1)
    counts = await service.prune(container.db, settings, later)
    assert counts["refresh_tokens"] == 0
    assert counts["auth_sessions"] == 0

    replay = await client.post(
        "/api/v1/auth/token",
        data={"grant_type": "refresh_token", "refresh_token": alice.refresh_token},
    )
    assert replay.status_code == 400
    successor = await client.post(
        "/api/v1/auth/token",
        data={"grant_type": "refresh_token", "refresh_token": rotated.json()["refresh_token"]},
    )
    assert successor.status_code == 400  # the family was revoked by the replay


async def test_the_loop_survives_failures_and_stops_promptly(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    calls: list[int] = []
    passed = asyncio.Event()

    async def flaky(*_args: Any, **_kwargs: Any) -> dict[str, int]:
        calls.append(1)
        if len(calls) == 1:
            raise OSError("the database is away")
        passed.set()
        return dict.fromkeys(TABLES, 0)

    monkeypatch.setattr(service, "prune", flaky)
    stop = asyncio.Event()
    url = f"sqlite+aiosqlite:///{tmp_path / 'unused.db'}"  # never connected to
    settings = make_settings(tmp_path, url)
    db = Database(url, pool_size=1)
    loop = asyncio.create_task(
        service.retention_loop(stop, db, settings, interval=0.01, first_pass_after=0)
    )
    await asyncio.wait_for(passed.wait(), 5)
    assert len(calls) >= 2  # the failed pass was retried at the next interval
    stop.set()
    await asyncio.wait_for(loop, 1)
    await db.dispose()

    # disabled: returns at once; the loop is registered with the event runtime
    disabled = make_settings(tmp_path, url, retention_enabled=False)
    await asyncio.wait_for(service.run_retention(asyncio.Event(), _Ctx(disabled)), 1)
    assert build_registry().loops["retention"] is service.run_retention


@dataclass
class _Ctx:
    settings: Settings


# -- the command line ----------------------------------------------------------------------


@pytest.fixture
def cli_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    for name in list(os.environ):
        if name.startswith("TIDINGS_"):
            monkeypatch.delenv(name)
    url = f"sqlite+aiosqlite:///{tmp_path / 'prune.db'}"
    monkeypatch.setenv("TIDINGS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("TIDINGS_DATABASE_URL", url)
    monkeypatch.setenv("TIDINGS_LOG_LEVEL", "WARNING")
    get_settings.cache_clear()
    yield url
    get_settings.cache_clear()


def test_cli_prune_dry_run_then_prune(cli_db: str) -> None:
    runner = CliRunner()
    assert runner.invoke(cli_app, ["migrate"]).exit_code == 0

    async def seed() -> None:
        db = Database(cli_db, pool_size=1)
        try:
            async with db.unit_of_work(write=True) as session:
                old = utcnow() - timedelta(days=30)
                session.add_all(
                    OutboxMessage(
                        event_type="post.liked",
                        aggregate_id=i,
                        payload={},
                        created_at=old,
                        published_at=old,
                    )
                    for i in range(3)
                )
        finally:
            await db.dispose()

    asyncio.run(seed())

    def rows(output: str) -> dict[str, str]:
        found = {}
        for line in output.splitlines():
            cells = [c.strip() for c in line.strip("│┃ ").split("│")]
            if len(cells) == 2 and cells[0] in (*TABLES, "total"):
                found[cells[0]] = cells[1]
        return found

    dry = runner.invoke(cli_app, ["prune", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "dry run" in dry.output
    assert rows(dry.output) == {**dict.fromkeys(TABLES, "0"), "outbox": "3", "total": "3"}

    done = runner.invoke(cli_app, ["prune"])
    assert done.exit_code == 0, done.output
    assert rows(done.output)["outbox"] == "3"

    again = runner.invoke(cli_app, ["prune", "--dry-run"])
    assert rows(again.output) == {**dict.fromkeys(TABLES, "0"), "total": "0"}


def test_sessions_outlive_access_tokens_longer_than_refresh_tokens(tmp_path: Path) -> None:
    """Settings may let an access token outlive its refresh tokens: a session is not pruned
    while one could still be valid."""
    settings = make_settings(
        tmp_path,
        "sqlite+aiosqlite:///unused.db",
        access_token_ttl_seconds=7200,
        refresh_token_ttl_seconds=600,
    )
    now = datetime(2026, 12, 1, tzinfo=UTC)
    cutoffs = service.RetentionPolicy.from_settings(settings).cutoffs(now)
    assert now - cutoffs.sessions == timedelta(hours=3)  # the access token's 2 h, and an hour
