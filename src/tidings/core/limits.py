"""Request body size cap: 413 problem+json before the body reaches a route."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tidings.core.errors import PayloadTooLarge
from tidings.core.requestid import send_problem


class BodySizeLimitMiddleware:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

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
                await send_problem(
                    send,
                    scope,
                    413,
                    "Payload too large",
                    "payload-too-large",
                    f"The request body exceeds {self.max_bytes} bytes.",
                )
                return
        seen = 0

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise PayloadTooLarge(f"The request body exceeds {self.max_bytes} bytes.")
            return message

        await self.app(scope, counting_receive, send)
