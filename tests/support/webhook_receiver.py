"""A tiny HTTP(S) server on 127.0.0.1 for webhook tests: it records every connection and
request, and answers each path as told (status, headers, delays, huge or trickling bodies)."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from dataclasses import dataclass, field


@dataclass
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b"ok"
    delay: float = 0.0  # before the status line
    body_size: int | None = None  # stream this many bytes instead of ``body``
    chunk_delay: float = 0.0  # pause between 64 KiB (or ``chunk_size``) body chunks
    chunk_size: int = 65_536


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    headers: dict[str, str]  # lower-cased names
    body: bytes


_REASONS = {200: "OK", 204: "No Content", 302: "Found", 410: "Gone", 500: "Internal Server Error"}


class Receiver:
    """Start with ``async with Receiver() as r``; ``r.url("/hook")`` is where to send."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.tls = tls
        self.routes: dict[str, Reply] = {}
        self.requests: list[Seen] = []
        self.connections = 0
        self.port = 0
        self._server: asyncio.Server | None = None
        self._arrived = asyncio.Event()

    async def __aenter__(self) -> Receiver:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0, ssl=self.tls)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *_exc: object) -> None:
        assert self._server is not None
        self._server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._server.wait_closed(), 2)

    def url(self, path: str = "/hook", host: str = "127.0.0.1") -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{host}:{self.port}{path}"

    def seen(self, path: str | None = None) -> list[Seen]:
        return [r for r in self.requests if path is None or r.path == path]

    async def wait_for(self, count: int, path: str | None = None, within: float = 10.0) -> None:
        deadline = time.monotonic() + within
        while len(self.seen(path)) < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"receiver saw {len(self.seen(path))} of {count} requests")
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), remaining)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            seen = await _read_request(reader)
            if seen is None:
                return
            self.requests.append(seen)
            self._arrived.set()
            await _respond(writer, self.routes.get(seen.path, Reply()))
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


async def _read_request(reader: asyncio.StreamReader) -> Seen | None:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    method, target, _version = lines[0].split(" ", 2)
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return Seen(method, target, headers, body)


async def _respond(writer: asyncio.StreamWriter, reply: Reply) -> None:
    if reply.delay:
        await asyncio.sleep(reply.delay)
    size = reply.body_size if reply.body_size is not None else len(reply.body)
    head = [f"HTTP/1.1 {reply.status} {_REASONS.get(reply.status, 'Status')}"]
    head += [f"{k}: {v}" for k, v in {**reply.headers, "Content-Length": str(size)}.items()]
    head.append("Connection: close")
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
    await writer.drain()
    if reply.body_size is None:
        writer.write(reply.body)
        await writer.drain()
        return
    sent = 0
    while sent < size:
        chunk = min(reply.chunk_size, size - sent)
        writer.write(b"x" * chunk)
        await writer.drain()
        sent += chunk
        if reply.chunk_delay:
            await asyncio.sleep(reply.chunk_delay)
