"""Request body caps: size (413) and, for JSON, nesting depth (400) — before any parsing.

Python's json module recurses per nesting level, so a deep enough body would otherwise end in a
RecursionError (a 500). JSON bodies are buffered (they are capped in size anyway), scanned once,
and handed to the app unchanged.
"""

from __future__ import annotations

import re

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tidings.core.requestid import send_problem

_STRUCTURE = re.compile(rb'[^\[\]{}"\\]+')  # drop everything but what nesting depends on


def json_depth(body: bytes) -> int:
    """Maximum nesting depth of a JSON document (strings and escapes are skipped)."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in _STRUCTURE.sub(b"", body):
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            deepest = max(deepest, depth)
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return deepest


def _is_json(scope: Scope) -> bool:
    raw: bytes = dict(scope["headers"]).get(b"content-type", b"")
    content_type = raw.split(b";")[0].strip().lower()
    return content_type == b"application/json" or content_type.endswith(b"+json")


class BodySizeLimitMiddleware:
    def __init__(self, app: ASGIApp, max_bytes: int, max_json_depth: int = 32) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.max_json_depth = max_json_depth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None:
            try:
                too_big = int(declared) > self.max_bytes
            except ValueError:
                await send_problem(
                    send,
                    scope,
                    400,
                    "Bad request",
                    "bad-request",
                    "Content-Length is not a number.",
                )
                return
            if too_big:
                await self._too_large(send, scope)
                return
        if _is_json(scope):
            await self._buffered_json(scope, receive, send)
            return
        seen = 0

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    # An HTTPException passes through FastAPI's body parsing unchanged (any
                    # other error there becomes a 400) and is rendered as problem+json.
                    raise HTTPException(413, f"The request body exceeds {self.max_bytes} bytes.")
            return message

        await self.app(scope, counting_receive, send)

    async def _too_large(self, send: Send, scope: Scope) -> None:
        await send_problem(
            send,
            scope,
            413,
            "Payload too large",
            "payload-too-large",
            f"The request body exceeds {self.max_bytes} bytes.",
        )

    async def _buffered_json(self, scope: Scope, receive: Receive, send: Send) -> None:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._too_large(send, scope)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if json_depth(body) > self.max_json_depth:
            await send_problem(
                send,
                scope,
                400,
                "JSON nested too deeply",
                "json-too-deep",
                f"JSON may nest at most {self.max_json_depth} levels.",
            )
            return
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)
