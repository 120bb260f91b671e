"""The benchmark's baselines, served by uvicorn beside the API in the same run: a raw ASGI
endpoint doing one asyncpg primary-key lookup (``/pk``) and a trivial JSON one (``/json``).

``TIDINGS_BENCH_DSN`` (a plain ``postgresql://`` DSN) and ``TIDINGS_BENCH_MAX_ID`` (users are
looked up by a random id among the first ``max`` seeded ones, default 1000) configure it. Like
the API, it echoes ``X-Request-ID``: wrk's script (``mix.lua``) matches responses by it.
"""

from __future__ import annotations

import os
import random
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import asyncpg
import orjson

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
_state: dict[str, Any] = {}


async def _respond(scope: Scope, send: Send, status: int, body: bytes) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            headers.append((name, value[:64]))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            dsn = os.environ["TIDINGS_BENCH_DSN"]
            _state["pool"] = await asyncpg.create_pool(dsn, min_size=2, max_size=10)
            limit = int(os.environ.get("TIDINGS_BENCH_MAX_ID", "1000"))
            rows = await _state["pool"].fetch("SELECT id FROM users ORDER BY id LIMIT $1", limit)
            _state["ids"] = [r[0] for r in rows]
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await _state["pool"].close()
            await send({"type": "lifespan.shutdown.complete"})
            return


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    if scope["path"] == "/json":
        await _respond(scope, send, 200, b'{"status":"ok"}')
        return
    if scope["path"] == "/pk":
        user_id = random.choice(_state["ids"])  # noqa: S311 - not security
        row = await _state["pool"].fetchrow(
            "SELECT id, username, display_name FROM users WHERE id = $1", user_id
        )
        body = orjson.dumps({"id": str(row["id"]), "username": row["username"]})
        await _respond(scope, send, 200, body)
        return
    await _respond(scope, send, 404, b"{}")
