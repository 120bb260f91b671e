"""Webhook delivery against real local receivers: Standard Webhooks signatures, rotation, the
retry schedule on a fake clock, 410 and exhaustion disabling, redirects not followed, the
circuit breaker, SSRF refusals with no connection, DNS pinning, TLS with SNI, response caps."""

from __future__ import annotations

import datetime as dt
import random
import ssl
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sqlalchemy import func, select
from standardwebhooks.webhooks import Webhook

from tests.conftest import make_settings
from tests.support.webhook_receiver import Receiver, Reply
from tidings.accounts.schemas import RegisterRequest
from tidings.accounts.service import create_admin
from tidings.audit.models import AuditEvent
from tidings.auth.policy import Principal, Role
from tidings.core.container import Container
from tidings.core.db import utcnow
from tidings.core.errors import ValidationFailed
from tidings.events import domain
from tidings.events.consumers import ConsumerRegistry, Envelope
from tidings.events.delivery import apply_once
from tidings.events.models import OutboxMessage
from tidings.events.outbox import record
from tidings.notifications.models import NotificationGroup
from tidings.settings import Settings
from tidings.webhooks import consumers as webhook_consumers
from tidings.webhooks import service
from tidings.webhooks.dispatcher import DispatchPolicy, WebhookDispatcher
from tidings.webhooks.models import DeliveryStatus, WebhookDelivery, WebhookSubscription
from tidings.webhooks.schemas import WebhookCreate
from tidings.webhooks.sender import (
    AddressPolicy,
    Resolver,
    SafeHttpSender,
    SenderLimits,
    system_resolver,
)
from tidings.webhooks.service import WebhookKeys

LOOPBACK = ("127.0.0.1/32",)
SCHEDULE = [5, 300, 1800, 7200, 18_000, 36_000, 86_400]


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return make_settings(tmp_path / "data", database_url, webhook_allowed_hosts=list(LOOPBACK))


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with Receiver() as running:
        yield running


class FakeClock:
    def __init__(self) -> None:
        self.current = utcnow() + dt.timedelta(seconds=60)  # what tests insert is due

    def __call__(self) -> dt.datetime:
        return self.current

    def advance(self, **delta: float) -> None:
        self.current += dt.timedelta(**delta)


@dataclass
class World:
    container: Container
    admin: Principal
    clock: FakeClock
    dispatcher: WebhookDispatcher
    sender: SafeHttpSender

    @property
    def keys(self) -> WebhookKeys:
        return WebhookKeys.from_settings(self.container.settings, self.container.keys.secret_key)

    async def subscribe(self, url: str, event_types: Sequence[str] = ("*",)) -> tuple[int, str]:
        cmd = WebhookCreate(url=url, event_types=list(event_types))
        async with self.container.db.unit_of_work() as session:
            subscription, secret = await service.create_webhook(session, self.admin, cmd, self.keys)
            return subscription.id, secret

    async def emit(self, event: domain.DomainEvent | None = None) -> int:
        """Commit an event to the outbox and run the webhook consumer on it."""
        async with self.container.db.unit_of_work() as session:
            record(session, event or domain.PostCreated(post_id=7, user_id=self.admin.user_id))
            await session.flush()
            latest = select(OutboxMessage.id).order_by(OutboxMessage.id.desc()).limit(1)
            event_id = int((await session.execute(latest)).scalar_one())
        registry = ConsumerRegistry()
        webhook_consumers.register(registry)
        await apply_once(self.container.db, registry, "webhooks", event_id, self.container)
        return event_id

    async def deliveries(self, subscription_id: int) -> list[WebhookDelivery]:
        async with self.container.db.unit_of_work(write=False) as session:
            stmt = (
                select(WebhookDelivery)
                .where(WebhookDelivery.subscription_id == subscription_id)
                .order_by(WebhookDelivery.id)
            )
            return list((await session.execute(stmt)).scalars())

    async def subscription(self, subscription_id: int) -> WebhookSubscription:
        async with self.container.db.unit_of_work(write=False) as session:
            found = await session.get(WebhookSubscription, subscription_id)
            assert found is not None
            return found

    async def count(self, model: Any, **where: Any) -> int:
        async with self.container.db.unit_of_work(write=False) as session:
            stmt = select(func.count()).select_from(model)
            for name, value in where.items():
                stmt = stmt.where(getattr(model, name) == value)
            return int((await session.execute(stmt)).scalar_one())


@asynccontextmanager
async def world(
    container: Container,
    *,
    allowed: Sequence[str] = LOOPBACK,
    resolver: Resolver = system_resolver,
    limits: SenderLimits | None = None,
    **policy: Any,
) -> AsyncIterator[World]:
    async with container.db.unit_of_work() as session:
        cmd = RegisterRequest(
            username="hookadmin", email="hookadmin@example.com", password="x" * 12
        )
        user = await create_admin(session, container.hasher, cmd)
    admin = Principal(user.id, user.username, Role.ADMIN, session_id=0)
    clock = FakeClock()
    sender = SafeHttpSender(AddressPolicy(allowed), limits, resolver=resolver)
    keys = WebhookKeys.from_settings(container.settings, container.keys.secret_key)
    base = DispatchPolicy.from_settings(container.settings)
    dispatcher = WebhookDispatcher(
        container.db,
        sender,
        keys.cipher,
        replace(base, **policy),
        now=clock,
        rng=random.Random(4),
    )
    try:
        yield World(container, admin, clock, dispatcher, sender)
    finally:
        await sender.aclose()


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


async def test_redirects_are_failures_and_never_followed(
    container: Container, receiver: Receiver
) -> None:
    receiver.routes["/moved"] = Reply(302, headers={"Location": receiver.url("/target")})
    receiver.routes["/target"] = Reply(200)
    async with world(container) as w:
        sub_id, _ = await w.subscribe(receiver.url("/moved"))
        await w.emit()
        assert await w.dispatcher.run_once() == 1
        [delivery] = await w.deliveries(sub_id)
    assert (delivery.status, delivery.response_status) == (DeliveryStatus.PENDING, 302)
    assert delivery.last_error == "HTTP 302: redirects are not followed"
    assert len(receiver.seen("/moved")) == 1
    assert receiver.seen("/target") == []


@pytest.mark.parametrize("allowed", [(), ("10.0.0.0/8",)])
async def test_a_name_resolving_to_loopback_is_refused_without_a_connection(
    container: Container, receiver: Receiver, allowed: tuple[str, ...]
) -> None:
    async with world(container, allowed=allowed) as w:
        sub_id, _ = await w.subscribe(receiver.url("/hook", host="localhost"))
        await w.emit()
        assert await w.dispatcher.run_once() == 1
        [delivery] = await w.deliveries(sub_id)
    assert delivery.status == DeliveryStatus.PENDING
    assert delivery.response_status is None
    assert delivery.last_error is not None
    assert delivery.last_error.startswith("refused: localhost resolves to")
    assert "loopback" in delivery.last_error
    assert receiver.connections == 0
    assert receiver.requests == []


@pytest.mark.parametrize(
    "answers",
    [["169.254.169.254"], ["93.184.215.14", "10.1.2.3"], ["2606:4700::1", "::ffff:127.0.0.1"]],
)
async def test_any_internal_answer_refuses_the_delivery(
    container: Container, monkeypatch: pytest.MonkeyPatch, answers: list[str]
) -> None:
    asked: list[tuple[str, int]] = []

    async def resolver(host: str, port: int) -> list[str]:
        asked.append((host, port))
        return answers

    async with world(container, allowed=(), resolver=resolver) as w:
        connects: list[object] = []

        async def no_connect(*args: object, **kwargs: object) -> None:
            connects.append(args)
            raise AssertionError("a refused destination must not be connected to")

        monkeypatch.setattr(w.sender, "_attempt", no_connect)
        sub_id, _ = await w.subscribe("http://metadata.example.test/latest/meta-data")
        await w.emit()
        assert await w.dispatcher.run_once() == 1
        [delivery] = await w.deliveries(sub_id)
    assert asked == [("metadata.example.test", 80)]  # resolved once
    assert connects == []
    assert delivery.last_error is not None
    assert delivery.last_error.startswith("refused: metadata.example.test resolves to")


async def test_ip_literals_of_internal_addresses_are_refused(container: Container) -> None:
    async with world(container, allowed=()) as w:
        for url in ("http://169.254.169.254/latest", "http://[::ffff:127.0.0.1]:8080/x"):
            cmd = WebhookCreate(url=url, event_types=["*"])
            keys = WebhookKeys(w.keys.cipher, AddressPolicy(()), w.keys.overlap)
            async with container.db.unit_of_work() as session:
                with pytest.raises(ValidationFailed):
                    await service.create_webhook(session, w.admin, cmd, keys)


async def test_ipv4_mapped_literal_is_refused_by_the_sender(receiver: Receiver) -> None:
    sender = SafeHttpSender(AddressPolicy(()))
    try:
        for host in ("[::ffff:127.0.0.1]", "[::ffff:7f00:1]", "[::ffff:169.254.169.254]"):
            result = await sender.send(f"http://{host}:{receiver.port}/hook", b"{}", {})
            assert result.refused, host
            assert result.error is not None
            assert "IPv4-mapped" in result.error
        for url in (receiver.url("/hook"), f"http://0.0.0.0:{receiver.port}/x", "ftp://x/y"):
            assert (await sender.send(url, b"{}", {})).refused, url
    finally:
        await sender.aclose()
    assert receiver.connections == 0


@pytest.mark.parametrize(
    "host", ["localhost", "LOCALHOST", "127.1", "2130706433", "0x7f000001", "[::1]", "[::]"]
)
async def test_other_spellings_of_loopback_are_refused(receiver: Receiver, host: str) -> None:
    """Whatever the spelling, the check is on the addresses the name resolves to."""
    sender = SafeHttpSender(AddressPolicy(()))
    try:
        result = await sender.send(f"http://{host}:{receiver.port}/hook", b"{}", {})
    finally:
        await sender.aclose()
    assert result.refused, result
    assert result.error is not None
    assert result.error.startswith("refused:")
    assert receiver.connections == 0


async def test_connection_goes_to_the_address_resolved_once(receiver: Receiver) -> None:
    """The name is never resolved by the HTTP client: a rebinding DNS cannot switch it."""
    asked: list[str] = []

    async def resolver(host: str, port: int) -> list[str]:
        asked.append(host)
        return ["127.0.0.1"]

    sender = SafeHttpSender(AddressPolicy(LOOPBACK), resolver=resolver)
    try:
        result = await sender.send(receiver.url("/hook", host="hooks.rebind.test"), b"{}", {})
    finally:
        await sender.aclose()
    assert result.ok, result
    assert asked == ["hooks.rebind.test"]
    [request] = receiver.requests
    assert request.headers["host"] == f"hooks.rebind.test:{receiver.port}"


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


async def test_huge_and_slow_responses_are_capped(receiver: Receiver) -> None:
    receiver.routes["/huge"] = Reply(200, body_size=20_000_000)
    receiver.routes["/trickle"] = Reply(200, body_size=10_000, chunk_size=10, chunk_delay=0.05)
    receiver.routes["/slow"] = Reply(200, delay=5)
    limits = SenderLimits(total_timeout=0.6, max_response_bytes=4096)
    sender = SafeHttpSender(AddressPolicy(LOOPBACK), limits)
    try:
        started = time.monotonic()
        huge = await sender.send(receiver.url("/huge"), b"{}", {})
        assert huge.ok
        assert huge.truncated
        assert huge.bytes_read == 4096
        assert len(huge.excerpt) == 1024

        trickle = await sender.send(receiver.url("/trickle"), b"{}", {})
        assert trickle.ok
        assert trickle.truncated
        assert trickle.bytes_read < 10_000

        slow = await sender.send(receiver.url("/slow"), b"{}", {})
        assert slow.status_code is None
        assert slow.error is not None
        assert "timed out" in slow.error
        assert time.monotonic() - started < 4
    finally:
        await sender.aclose()


def _certificate(hostname: str) -> tuple[bytes, bytes, bytes]:
    """(CA certificate, leaf certificate, leaf key) in PEM, the leaf valid for ``hostname``."""
    now = dt.datetime.now(dt.UTC)

    def build(subject: str, issuer: x509.Name | None, key: Any, signer: Any, ca: bool) -> Any:
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
        builder = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(issuer or name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(hours=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if not ca:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.DNSName(hostname)]), critical=False
            )
        return builder.sign(signer, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = build("Test CA", None, ca_key, ca_key, True)
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = build(hostname, ca.subject, leaf_key, ca_key, False)
    pem = serialization.Encoding.PEM
    key_pem = leaf_key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return ca.public_bytes(pem), leaf.public_bytes(pem), key_pem


@pytest.mark.parametrize(("name", "ok"), [("hooks.example.test", True), ("other.test", False)])
async def test_https_to_the_pinned_address_checks_the_certificate_for_the_name(
    tmp_path: Path, name: str, ok: bool
) -> None:
    ca_pem, leaf_pem, key_pem = _certificate("hooks.example.test")
    (tmp_path / "leaf.pem").write_bytes(leaf_pem)
    (tmp_path / "leaf.key").write_bytes(key_pem)
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(tmp_path / "leaf.pem", tmp_path / "leaf.key")
    client_tls = ssl.create_default_context(cadata=ca_pem.decode())

    async def resolver(host: str, port: int) -> list[str]:
        return ["127.0.0.1"]

    async with Receiver(tls=server_tls) as receiver:
        sender = SafeHttpSender(AddressPolicy(LOOPBACK), resolver=resolver, verify=client_tls)
        try:
            result = await sender.send(receiver.url("/hook", host=name), b"{}", {})
        finally:
            await sender.aclose()
        assert result.ok is ok, result
        if ok:
            assert receiver.seen("/hook")[0].headers["host"] == f"{name}:{receiver.port}"
        else:
            assert result.error is not None
            assert receiver.seen() == []
