"""The client's address: forwarding headers count only when the peer is a trusted proxy."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

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


def _forwarded_chain(headers: dict[bytes, bytes]) -> list[str]:
    forwarded = headers.get(b"forwarded")
    if forwarded is not None:
        chain = []
        for element in forwarded.decode("latin-1").split(","):
            for pair in element.split(";"):
                name, _, value = pair.strip().partition("=")
                if name.lower() == "for":
                    chain.append(value)
        return chain
    xff = headers.get(b"x-forwarded-for")
    return [p for p in xff.decode("latin-1").split(",")] if xff else []


def client_ip(peer: str | None, headers: dict[bytes, bytes], trusted: Sequence[Network]) -> str:
    """Walk the forwarding chain from the right while hops are trusted proxies; the first
    untrusted hop is the client. A spoofed header from an untrusted peer changes nothing."""
    if peer is None:
        return "unknown"
    if not trusted or not _trusted(peer, trusted):
        return peer
    for hop in reversed(_forwarded_chain(headers)):
        parsed = _address(hop)
        if parsed is None:
            return peer
        if not any(parsed in net for net in trusted):
            return str(parsed)
    return peer
