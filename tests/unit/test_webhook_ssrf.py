"""Which destinations webhooks may reach: address classification and the allowlist."""

from __future__ import annotations

import ipaddress

import pytest
from pydantic import ValidationError

from tidings.settings import Settings
from tidings.webhooks.sender import AddressPolicy, refusal_reason


def ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.ip_address(text)


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("127.255.255.254", "loopback"),
        ("::1", "loopback"),
        ("10.0.0.1", "private"),
        ("10.255.255.255", "private"),
        ("172.16.0.1", "private"),
        ("172.31.255.254", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "link-local"),  # cloud metadata
        ("169.254.0.1", "link-local"),
        ("fe80::1", "link-local"),
        ("febf:ffff::1", "link-local"),
        ("100.64.0.1", "shared (CGNAT)"),
        ("100.127.255.254", "shared (CGNAT)"),
        ("fc00::1", "unique-local"),
        ("fd12:3456:789a::1", "unique-local"),
        ("::ffff:127.0.0.1", "IPv4-mapped IPv6"),
        ("::ffff:169.254.169.254", "IPv4-mapped IPv6"),
        ("::ffff:8.8.8.8", "IPv4-mapped IPv6"),  # mapped addresses are refused outright
        ("224.0.0.1", "multicast"),
        ("239.255.255.250", "multicast"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "unspecified"),  # noqa: S104 (an address under test, not a bind)
        ("::", "unspecified"),
        ("fec0::1", "site-local"),
        ("240.0.0.1", "private"),  # reserved for future use
        ("255.255.255.255", "private"),  # broadcast
        ("192.0.2.10", "private"),  # documentation
        ("198.18.0.1", "private"),  # benchmarking
        ("0.1.2.3", "private"),  # "this network"
        ("2001:db8::1", "private"),  # documentation
        ("::7f00:1", "reserved"),  # IPv4-compatible (deprecated)
    ],
)
def test_internal_addresses_are_refused(address: str, kind: str) -> None:
    assert refusal_reason(ip(address)) == kind


@pytest.mark.parametrize(
    ("address", "inner"),
    [
        ("2002:7f00:1::", "loopback"),
        ("2002:a9fe:a9fe::", "link-local"),
        ("2002:a00:1::", "private"),
    ],
)
def test_6to4_addresses_are_judged_by_the_ipv4_inside(address: str, inner: str) -> None:
    assert refusal_reason(ip(address)) == f"IPv6 (6to4/NAT64) embedding a {inner} IPv4"


def test_nat64_addresses_are_refused() -> None:
    assert refusal_reason(ip("64:ff9b::a9fe:a9fe")) is not None
    assert refusal_reason(ip("64:ff9b::808:808")) is not None


@pytest.mark.parametrize(
    "address",
    [
        "8.8.8.8",
        "1.1.1.1",
        "93.184.215.14",
        "172.32.0.1",  # just outside 172.16/12
        "100.128.0.1",  # just outside 100.64/10
        "11.0.0.1",
        "2606:4700:4700::1111",
        "2001:4860:4860::8888",
        "2002:808:808::1",  # 6to4 of a public address
    ],
)
def test_public_addresses_are_allowed(address: str) -> None:
    assert refusal_reason(ip(address)) is None


def test_any_refused_address_refuses_the_host() -> None:
    policy = AddressPolicy()
    assert policy.refusal("example.com", [ip("93.184.215.14")]) is None
    refusal = policy.refusal("example.com", [ip("93.184.215.14"), ip("10.0.0.7")])
    assert refusal == "example.com resolves to 10.0.0.7, a private address"
    assert policy.refusal("empty.test", []) == "empty.test resolved to no address"
    mapped = policy.refusal("m.test", [ip("::ffff:127.0.0.1")])
    assert mapped == "m.test resolves to ::ffff:7f00:1, an IPv4-mapped IPv6 address"


def test_allowlisted_networks_and_hosts() -> None:
    policy = AddressPolicy(["127.0.0.0/8", "fd00::/8", "receiver.internal"])
    assert policy.refusal("localhost", [ip("127.0.0.1")]) is None
    assert policy.refusal("v6.test", [ip("fd00::5")]) is None
    assert policy.refusal("mapped.test", [ip("::ffff:127.0.0.2")]) is None  # the same host
    assert policy.refusal("receiver.internal", [ip("10.9.8.7")]) is None  # trusted by name
    assert policy.refusal("Receiver.Internal.", [ip("10.9.8.7")]) is None
    # the allowlist opens only what it names
    assert policy.refusal("meta.test", [ip("169.254.169.254")]) is not None
    assert policy.refusal("both.test", [ip("127.0.0.1"), ip("192.168.0.1")]) is not None
    assert policy.refusal("other.internal", [ip("10.9.8.7")]) is not None


def test_allowlist_setting_is_parsed_and_checked() -> None:
    settings = Settings(webhook_allowed_hosts="127.0.0.0/8, ::1, 10.1.2.3, Hooks.Local")
    assert settings.webhook_allowed_hosts == [
        "127.0.0.0/8",
        "::1/128",
        "10.1.2.3/32",
        "hooks.local",
    ]
    assert Settings().webhook_allowed_hosts == []
    with pytest.raises(ValidationError):
        Settings(webhook_allowed_hosts="not a host!")


def test_retry_schedule_setting() -> None:
    assert Settings().webhook_retry_schedule == [5, 300, 1800, 7200, 18_000, 36_000, 86_400]
    assert Settings(webhook_retry_schedule="1, 2,3").webhook_retry_schedule == [1, 2, 3]
    with pytest.raises(ValidationError):
        Settings(webhook_retry_schedule="0")
    with pytest.raises(ValidationError):
        Settings(webhook_retry_schedule="")
