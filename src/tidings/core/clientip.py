"""The client's address: forwarding headers count only when the peer is a trusted proxy."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from typing import Literal

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(values: Iterable[str]) -> list[Network]:
    return [ipaddress.ip_network(v.strip(), strict=False) for v in values if v.strip()]


def _address(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    value = value.strip().strip('"')
    if value.startswith("["):  # [v6]:port
        value = value[1:].split("]", 1)[0]
    elif value.count(":") == 1:  # v4:port
        value = value.split(":", 1)[0]
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        return None


def _trusted(address: str, trusted: Sequence[Network]) -> bool:
    parsed = _address(address)
    return parsed is not None and any(parsed in net for net in trusted)


ProxyHeader = Literal["x-forwarded-for", "forwarded"]


def _header_value(headers: Sequence[tuple[bytes, bytes]], name: bytes) -> str | None:
    """Every line of one header, joined as RFC 9110 says repeated lines combine."""
    values = [value.decode("latin-1") for key, value in headers if key == name]
    return ",".join(values) if values else None


def _forwarded_chain(headers: Sequence[tuple[bytes, bytes]], header: ProxyHeader) -> list[str]:
    """The addresses in the one header the trusted proxy sets, oldest hop first. The other
    header is never read: a proxy that sets only ``X-Forwarded-For`` passes a client's own
    ``Forwarded`` through untouched, and reading it would let the client pick its address."""
    if header == "forwarded":
        forwarded = _header_value(headers, b"forwarded")
        if forwarded is None:
            return []
        chain = []
        for element in forwarded.split(","):
            for pair in element.split(";"):
                name, _, value = pair.strip().partition("=")
                if name.lower() == "for":
                    chain.append(value)
        return chain
    xff = _header_value(headers, b"x-forwarded-for")
    return xff.split(",") if xff else []


def client_ip(
    peer: str | None,
    headers: Sequence[tuple[bytes, bytes]],
    trusted: Sequence[Network],
    header: ProxyHeader = "x-forwarded-for",
) -> str:
    """Walk the forwarding chain from the right while hops are trusted proxies; the first
    untrusted hop is the client. A spoofed header from an untrusted peer changes nothing."""
    if peer is None:
        return "unknown"
    if not trusted or not _trusted(peer, trusted):
        return peer
    for hop in reversed(_forwarded_chain(headers, header)):
        parsed = _address(hop)
        if parsed is None:
            return peer
        if not any(parsed in net for net in trusted):
            return str(parsed)
    return peer
