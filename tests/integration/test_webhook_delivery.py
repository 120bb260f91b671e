"""Webhook delivery against real local receivers: Standard Webhooks signatures, rotation, the
retry schedule on a fake clock, 410 and exhaustion disabling, the circuit breaker. What the
sender refuses and caps is in test_webhook_sender.py."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from standardwebhooks.webhooks import Webhook

from tests.support.webhook_receiver import Receiver, Reply
from tests.support.webhooks import webhook_settings, world
from tidings.audit.models import AuditEvent
from tidings.core.container import Container
from tidings.events import domain
from tidings.events.consumers import Envelope
from tidings.events.models import OutboxMessage
from tidings.notifications.models import NotificationGroup
from tidings.settings import Settings
from tidings.webhooks import consumers as webhook_consumers
from tidings.webhooks import service
from tidings.webhooks.models import DeliveryStatus

SCHEDULE = [5, 300, 1800, 7200, 18_000, 36_000, 86_400]


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return webhook_settings(tmp_path, database_url)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with Receiver() as running:
        yield running


def _only_signature(headers: dict[str, str], signature: str) -> dict[str, str]:
    return {**headers, "webhook-signature": signature}


async def test_delivery_is_signed_per_standard_webhooks(
    container: Container, receiver: Receiver
) -> None:
    async with world(container) as w:
        sub_id, secret = await w.subscribe(receiver.url("/hook"), ["post.created"])
        event_id = await w.emit(domain.PostCreated(post_id=42, user_id=w.admin.user_id))
        await w.emit(domain.UserFollowed(user_id=1, target_user_id=2))  # not subscribed
        assert await w.dispatcher.run_once() == 1

    [request] = receiver.seen("/hook")
    payload = Webhook(secret).verify(request.body, request.headers)
    assert payload["type"] == "post.created"
    assert payload["data"]["post_id"] == "42"
    assert payload["timestamp"].endswith("Z")
    dt.datetime.fromisoformat(payload["timestamp"])
    assert request.headers["webhook-id"] == f"msg_{event_id}"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["host"] == f"127.0.0.1:{receiver.port}"
    assert request.headers["webhook-signature"].startswith("v1,")
    assert len(request.headers["webhook-signature"].split(" ")) == 1
    [delivery] = await w.deliveries(sub_id)
    assert delivery.status == DeliveryStatus.DELIVERED
    assert (delivery.attempts, delivery.response_status) == (1, 200)
    assert delivery.latency_ms is not None
    assert delivery.next_attempt_at is None
    assert delivery.last_error is None


async def test_fan_out_is_idempotent_per_subscription_and_event(
    container: Container, receiver: Receiver
) -> None:
    async with world(container) as w:
        first, _ = await w.subscribe(receiver.url("/a"))
        second, _ = await w.subscribe(receiver.url("/b"), ["post.created"])
        event_id = await w.emit()
        async with container.db.unit_of_work() as session:  # a redelivered event
            row = await session.get(OutboxMessage, event_id)
            assert row is not None
            envelope = Envelope.of(row)
            await webhook_consumers.fan_out(session, envelope, container)
        assert len(await w.deliveries(first)) == 1
        assert len(await w.deliveries(second)) == 1


async def test_rotation_sends_both_signatures_during_the_overlap(
    container: Container, receiver: Receiver
) -> None:
    async with world(container) as w:
        sub_id, old_secret = await w.subscribe(receiver.url("/hook"))
        async with container.db.unit_of_work() as session:
            _, new_secret = await service.rotate_secret(session, w.admin, sub_id, w.keys)
        assert new_secret != old_secret
        await w.emit()
        assert await w.dispatcher.run_once() == 1

        [request] = receiver.seen("/hook")
        signatures = request.headers["webhook-signature"].split(" ")
        assert len(signatures) == 2
        Webhook(new_secret).verify(request.body, request.headers)
        Webhook(old_secret).verify(request.body, request.headers)
        for secret, signature in ((new_secret, signatures[0]), (old_secret, signatures[1])):
            Webhook(secret).verify(request.body, _only_signature(request.headers, signature))

        # after the overlap only the new secret signs
        w.clock.advance(hours=25)
        await w.emit(domain.PostCreated(post_id=8, user_id=w.admin.user_id))
        assert await w.dispatcher.run_once() == 1
        later = receiver.seen("/hook")[1]
        [signature] = later.headers["webhook-signature"].split(" ")
        stamp = dt.datetime.fromtimestamp(int(later.headers["webhook-timestamp"]), dt.UTC)
        expected = Webhook(new_secret).sign(later.headers["webhook-id"], stamp, later.body.decode())
        assert signature == expected


async def test_server_errors_retry_on_the_schedule_then_disable(
    container: Container, receiver: Receiver
) -> None:
    receiver.routes["/fail"] = Reply(500, body=b"boom")
    async with world(container) as w:
        sub_id, _ = await w.subscribe(receiver.url("/fail"))
        await w.emit()
        for attempt, delay in enumerate(SCHEDULE, start=1):
            assert await w.dispatcher.run_once() == 1
            [delivery] = await w.deliveries(sub_id)
            assert (delivery.status, delivery.attempts) == (DeliveryStatus.PENDING, attempt)
            assert (delivery.response_status, delivery.last_error) == (500, "HTTP 500")
            assert delivery.response_excerpt == "boom"
            assert delivery.next_attempt_at is not None
            wait = (delivery.next_attempt_at - w.clock()).total_seconds()
            assert delay * 0.9 <= wait <= delay * 1.1, (attempt, wait)
            assert await w.dispatcher.run_once() == 0  # not due yet
            w.clock.advance(seconds=wait * 0.5)
            assert await w.dispatcher.run_once() == 0  # still not due
            w.clock.current = delivery.next_attempt_at
        assert await w.dispatcher.run_once() == 1  # the 8th and last attempt

        [delivery] = await w.deliveries(sub_id)
        assert (delivery.status, delivery.attempts) == (DeliveryStatus.DEAD, 8)
        assert (delivery.response_status, delivery.last_error) == (500, "HTTP 500")
        assert delivery.next_attempt_at is None
        subscription = await w.subscription(sub_id)
        assert not subscription.enabled
        assert "failed 8 times" in (subscription.disabled_reason or "")
        assert len(receiver.seen("/fail")) == 8
        assert await w.count(AuditEvent, action="webhook:auto_disabled", target_id=str(sub_id)) == 1
        assert await w.count(NotificationGroup, recipient_id=w.admin.user_id, kind="system") == 1
        await w.emit(domain.PostCreated(post_id=9, user_id=1))  # disabled: no new delivery
        assert len(await w.deliveries(sub_id)) == 1


async def test_gone_disables_the_subscription_at_once(
    container: Container, receiver: Receiver
) -> None:
    receiver.routes["/gone"] = Reply(410)
    async with world(container) as w:
        sub_id, _ = await w.subscribe(receiver.url("/gone"))
        await w.emit()
        await w.emit(domain.PostCreated(post_id=8, user_id=1))
        assert await w.dispatcher.run_once() >= 1
        subscription = await w.subscription(sub_id)
        assert not subscription.enabled
        assert subscription.disabled_reason == "the endpoint answered 410 Gone"
        statuses = [(d.status, d.response_status) for d in await w.deliveries(sub_id)]
        assert (DeliveryStatus.DEAD, 410) in statuses
        w.clock.advance(days=2)
        assert await w.dispatcher.run_once() == 0  # nothing goes to a disabled endpoint
        assert len(receiver.seen("/gone")) == len([s for s in statuses if s[1] == 410])
        assert await w.count(AuditEvent, action="webhook:auto_disabled", target_id=str(sub_id)) == 1
        assert await w.count(NotificationGroup, recipient_id=w.admin.user_id, kind="system") == 1


async def test_circuit_breaker_stops_hammering_a_failing_endpoint(
    container: Container, receiver: Receiver
) -> None:
    receiver.routes["/flaky"] = Reply(500)
    async with world(container, breaker_threshold=3) as w:
        sub_id, _ = await w.subscribe(receiver.url("/flaky"))
        for post_id in range(6):
            await w.emit(domain.PostCreated(post_id=post_id + 1, user_id=1))
        assert await w.dispatcher.run_once() == 3  # never more than the threshold at once
        assert len(receiver.seen()) == 3
        subscription = await w.subscription(sub_id)
        assert subscription.consecutive_failures == 3
        assert subscription.circuit_open_until is not None
        for _ in range(3):  # open: everything stays pending, nothing is sent
            w.clock.advance(seconds=60)
            assert await w.dispatcher.run_once() == 0
        assert len(receiver.seen()) == 3

        w.clock.advance(seconds=300)  # cool-down over: exactly one probe
        assert await w.dispatcher.run_once() == 1
        assert len(receiver.seen()) == 4
        assert await w.dispatcher.run_once() == 0  # the failed probe re-opened it

        receiver.routes["/flaky"] = Reply(200)
        w.clock.advance(seconds=301)
        assert await w.dispatcher.run_once() == 1  # probe succeeds: circuit closed
        for _ in range(5):
            w.clock.advance(seconds=301)
            await w.dispatcher.run_once()
        deliveries = await w.deliveries(sub_id)
        assert {d.status for d in deliveries} == {DeliveryStatus.DELIVERED}
        assert (await w.subscription(sub_id)).consecutive_failures == 0
        assert (await w.subscription(sub_id)).enabled
