"""A small closed-loop HTTP/1.1 load generator over asyncio streams (keep-alive, loopback).

Each of ``concurrency`` connections sends one request, reads the whole response, and repeats
until the deadline or its request budget runs out: every loop is bounded in time and count.
It is meant to run in its own process, so it does not share the server's event loop. The
fallback when ``wrk`` is missing (:mod:`tidings.bench.wrk`): one Python process tops out at a
few thousand requests per second, which the ``/json`` baseline shows.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from dataclasses import dataclass, field

from tidings.bench.workload import NextRequest

MAX_REQUESTS_PER_CONNECTION = 1_000_000


@dataclass
class Tally:
    """Per endpoint label: every latency (seconds), the non-2xx/failed count, one error sample;
    ``wall``: the seconds the run took (the req/s denominator)."""

    latencies: dict[str, list[float]] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    samples: dict[str, str] = field(default_factory=dict)  # one error body per endpoint
    unfinished: dict[str, int] = field(default_factory=dict)  # in flight at the end (wrk)
    wall: float = 0.0

    def add(self, label: str, seconds: float, ok: bool, detail: str = "") -> None:
        self.latencies.setdefault(label, []).append(seconds)
        if not ok:
            self.errors[label] = self.errors.get(label, 0) + 1
            self.samples.setdefault(label, detail[:700])


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
    body = await reader.readexactly(length) if length else b""
    return status, body


async def _connection(
    host: str,
    port: int,
    next_request: NextRequest,
    deadline: float,
    tally: Tally,
    seed: int,
) -> None:
    rng = random.Random(seed)  # noqa: S311 - a workload mix, not security
    reader, writer = await asyncio.open_connection(host, port)
    try:
        for _ in range(MAX_REQUESTS_PER_CONNECTION):
            if time.monotonic() >= deadline:
                return
            method, path, headers, body, label = next_request(rng)
            head = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}"]
            head += [f"{k}: {v}" for k, v in headers.items()]
            head.append(f"Content-Length: {len(body)}")
            started = time.perf_counter()
            writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
            try:
                status, answer = await asyncio.wait_for(_read_response(reader), 30)
            except (TimeoutError, asyncio.IncompleteReadError, ConnectionError) as exc:
                tally.add(label, time.perf_counter() - started, False, repr(exc))
                return
            ok = 200 <= status < 300
            detail = f"{status} {answer[:600]!r}"
            tally.add(label, time.perf_counter() - started, ok, detail)
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


async def drive(
    host: str,
    port: int,
    next_request: NextRequest,
    *,
    concurrency: int,
    duration: float,
    seed: int = 0,
) -> Tally:
    """Run the closed loop; returns the tally (with the wall time it took)."""
    tally = Tally()
    started = time.monotonic()
    deadline = started + duration
    tasks = [
        _connection(host, port, next_request, deadline, tally, seed * 1000 + i)
        for i in range(concurrency)
    ]
    await asyncio.wait_for(asyncio.gather(*tasks), duration + 60)
    tally.wall = time.monotonic() - started
    return tally
