"""SSRF-safe delivery over HTTP.

The host is resolved once; if any address is loopback, private, link-local, CGNAT, unique-local,
IPv4-mapped, multicast, unspecified or otherwise not globally routable, the request is refused
before any connection. Otherwise the connection goes to the resolved address itself (the URL's
host is kept for ``Host``, and for SNI and certificate checks over https), so a DNS answer that
changes between the check and the connect (rebinding) cannot redirect it. Redirects are never
followed, proxies from the environment are ignored, and the response is read with a size and
time cap.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

import httpx2

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Awaitable[list[str]]]

USER_AGENT = "Tidings-Webhooks/1"
EXCERPT_BYTES = 1024
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_UNIQUE_LOCAL = ipaddress.ip_network("fc00::/7")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def refusal_reason(address: IPAddress) -> str | None:
    """What kind of address ``address`` is when webhooks must not go there (``loopback``,
    ``private``, ...); None for a public unicast address."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return "IPv4-mapped IPv6"
        embedded = _embedded_ipv4(address)
        if embedded is not None and (inner := refusal_reason(embedded)) is not None:
            return f"IPv6 (6to4/NAT64) embedding a {inner} IPv4"
        if address.sixtofour is not None:
            # A 6to4 address is judged by the IPv4 inside only: ipaddress's own answer for
            # 2002::/16 changed between patch releases (3.11.2 calls it private, 3.11.7 not).
            return None
        if address.is_site_local:
            return "site-local"
    checks: list[tuple[bool, str]] = [
        (address.is_unspecified, "unspecified"),
        (address.is_loopback, "loopback"),
        (address.is_link_local, "link-local"),
        (address.is_multicast, "multicast"),
        (address in _CGNAT, "shared (CGNAT)"),
        (address in _UNIQUE_LOCAL, "unique-local"),
        (address.is_private, "private"),
        (address.is_reserved, "reserved"),
        (not address.is_global, "non-global"),
    ]
    return next((reason for hit, reason in checks if hit), None)


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address inside a 6to4 or NAT64 address (Teredo is refused as non-global)."""
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


class AddressPolicy:
    """Refusal rules plus the allowlist (``TIDINGS_WEBHOOK_ALLOWED_HOSTS``): networks whose
    addresses are allowed, and host names trusted whatever they resolve to."""

    def __init__(self, allowed: Sequence[str] = ()) -> None:
        self.networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        self.hosts: set[str] = set()
        for entry in allowed:
            try:
                self.networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                self.hosts.add(entry.lower().rstrip("."))

    def _allowlisted(self, address: IPAddress) -> bool:
        candidates: list[IPAddress] = [address]
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            candidates.append(address.ipv4_mapped)
        return any(a in n for a in candidates for n in self.networks if a.version == n.version)

    def refusal(self, host: str, addresses: Sequence[IPAddress]) -> str | None:
        """Why the delivery must not go to ``host`` resolving to ``addresses``; None if fine."""
        if not addresses:
            return f"{host} resolved to no address"
        if host.lower().rstrip(".") in self.hosts:
            return None
        for address in addresses:
            reason = refusal_reason(address)
            if reason is not None and not self._allowlisted(address):
                article = "an" if reason[0] in "aeiouIU" else "a"
                return f"{host} resolves to {address}, {article} {reason} address"
        return None


async def system_resolver(host: str, port: int) -> list[str]:
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    return [str(info[4][0]) for info in infos]


@dataclass(frozen=True)
class SendResult:
    status_code: int | None = None
    latency_ms: int = 0
    error: str | None = None
    refused: bool = False  # the destination was refused: no connection was attempted
    excerpt: str = ""  # the start of the response body
    bytes_read: int = 0
    truncated: bool = False  # the body was cut at the size or time cap

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


class Sender(Protocol):
    async def send(self, url: str, body: bytes, headers: dict[str, str]) -> SendResult: ...

    async def aclose(self) -> None: ...


@dataclass(frozen=True)
class SenderLimits:
    connect_timeout: float = 5.0
    total_timeout: float = 10.0
    max_response_bytes: int = 65_536
    max_connections: int = 10


class SafeHttpSender:
    """The real sender. ``resolver`` and ``verify`` can be replaced (tests, private CAs)."""

    def __init__(
        self,
        policy: AddressPolicy,
        limits: SenderLimits | None = None,
        *,
        resolver: Resolver = system_resolver,
        verify: ssl.SSLContext | bool = True,
    ) -> None:
        self.policy = policy
        self.limits = limits or SenderLimits()
        self.resolver = resolver
        transport = httpx2.AsyncHTTPTransport(
            verify=verify,
            trust_env=False,
            retries=0,
            # no keep-alive: a pooled connection is keyed by IP and must not be reused for
            # another host name (SNI, certificate) on the same address
            limits=httpx2.Limits(
                max_connections=self.limits.max_connections, max_keepalive_connections=0
            ),
        )
        self._client = httpx2.AsyncClient(
            transport=transport,
            trust_env=False,
            follow_redirects=False,
            timeout=httpx2.Timeout(self.limits.total_timeout, connect=self.limits.connect_timeout),
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def send(self, url: str, body: bytes, headers: dict[str, str]) -> SendResult:
        started = time.monotonic()
        try:
            target = httpx2.URL(url)
        except httpx2.InvalidURL as exc:
            return SendResult(error=f"invalid URL: {exc}", refused=True)
        if target.scheme not in ("http", "https") or not target.raw_host:
            return SendResult(
                error="only http and https URLs with a host are allowed", refused=True
            )
        host = target.raw_host.decode("ascii")
        addresses, failure = await self._resolve(host, target.port or _default_port(target))
        if failure is not None:
            return SendResult(error=failure, refused=True, latency_ms=_ms(started))
        refusal = self.policy.refusal(host, addresses)
        if refusal is not None:
            return SendResult(error=f"refused: {refusal}", refused=True, latency_ms=_ms(started))
        deadline = asyncio.get_running_loop().time() + self.limits.total_timeout
        result = SendResult(error="no address to connect to")
        for address in addresses[:3]:  # every address passed the check; try them in order
            result = await self._attempt(target, host, address, body, headers, deadline)
            if result.error is None or not result.error.startswith("connection failed"):
                break
        return replace(result, latency_ms=_ms(started))

    async def _resolve(self, host: str, port: int) -> tuple[list[IPAddress], str | None]:
        try:
            return [ipaddress.ip_address(host)], None
        except ValueError:
            pass
        try:
            async with asyncio.timeout(self.limits.connect_timeout):
                raw = await self.resolver(host, port)
            unique = list(dict.fromkeys(ipaddress.ip_address(a.split("%", 1)[0]) for a in raw))
        except (OSError, TimeoutError, ValueError, UnicodeError) as exc:
            return [], f"cannot resolve {host}: {type(exc).__name__}: {exc}"
        return unique, None

    async def _attempt(
        self,
        target: httpx2.URL,
        host: str,
        address: IPAddress,
        body: bytes,
        headers: dict[str, str],
        deadline: float,
    ) -> SendResult:
        pinned = target.copy_with(host=str(address))
        request_headers = {
            "Host": target.netloc.decode("ascii"),
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "Accept-Encoding": "identity",
            **headers,
        }
        extensions = {"sni_hostname": host} if target.scheme == "https" else {}
        status: int | None = None
        chunks = bytearray()
        try:
            async with (
                asyncio.timeout_at(deadline),
                self._client.stream(
                    "POST", pinned, content=body, headers=request_headers, extensions=extensions
                ) as response,
            ):
                status = response.status_code
                async for chunk in response.aiter_raw():
                    chunks.extend(chunk)
                    if len(chunks) >= self.limits.max_response_bytes:
                        return _read(status, chunks, self.limits.max_response_bytes, True)
        except TimeoutError:
            if status is not None:  # the endpoint answered; only its body was too slow
                return _read(status, chunks, self.limits.max_response_bytes, True)
            return SendResult(error=f"timed out after {self.limits.total_timeout:g} s")
        except httpx2.TimeoutException as exc:
            return SendResult(error=f"timed out ({type(exc).__name__})")
        except httpx2.ConnectError as exc:
            return SendResult(error=f"connection failed: {exc}"[:500])
        except httpx2.HTTPError as exc:
            return SendResult(error=f"{type(exc).__name__}: {exc}"[:500])
        return _read(status, chunks, self.limits.max_response_bytes, False)


def _read(status: int, chunks: bytearray, cap: int, truncated: bool) -> SendResult:
    kept = bytes(chunks[:cap])
    return SendResult(
        status_code=status,
        excerpt=kept[:EXCERPT_BYTES].decode("utf-8", errors="replace"),
        bytes_read=len(kept),
        truncated=truncated,
    )


def _default_port(url: httpx2.URL) -> int:
    return 443 if url.scheme == "https" else 80


def _ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
