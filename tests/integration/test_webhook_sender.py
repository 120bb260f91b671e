"""The webhook sender against real local receivers: redirects not followed, SSRF refusals with
no connection, DNS pinning, TLS with SNI on the pinned address, response caps."""

from __future__ import annotations

import datetime as dt
import ssl
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.support.webhook_receiver import Receiver, Reply
from tests.support.webhooks import LOOPBACK, webhook_settings, world
from tidings.core.container import Container
from tidings.core.errors import ValidationFailed
from tidings.settings import Settings
from tidings.webhooks import service
from tidings.webhooks.models import DeliveryStatus
from tidings.webhooks.schemas import WebhookCreate
from tidings.webhooks.sender import (
    AddressPolicy,
    SafeHttpSender,
    SenderLimits,
)
from tidings.webhooks.service import WebhookKeys


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return webhook_settings(tmp_path, database_url)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with Receiver() as running:
        yield running


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
