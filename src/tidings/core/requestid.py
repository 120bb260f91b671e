"""Request ids: taken from a sane ``X-Request-ID`` header or minted, bound to every log line."""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from contextvars import ContextVar

import orjson
import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tidings.core.clientip import Network, ProxyHeader, client_ip

log = structlog.get_logger("tidings.errors")
_request_id: ContextVar[str | None] = ContextVar("tidings_request_id", default=None)
_SAFE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


_client_ip: ContextVar[str | None] = ContextVar("tidings_client_ip", default=None)
_user_agent: ContextVar[str | None] = ContextVar("tidings_user_agent", default=None)
_PRINTABLE = re.compile(r"[^\x20-\x7e]")


def current_request_id() -> str | None:
    return _request_id.get()


def current_client_ip() -> str | None:
    return _client_ip.get()


def current_user_agent() -> str | None:
    """The request's ``User-Agent``, printable ASCII only, at most 256 characters."""
    return _user_agent.get()


def _clean_user_agent(raw: bytes) -> str | None:
    text = _PRINTABLE.sub("", raw.decode("latin-1"))[:256].strip()
    return text or None


class RequestIdMiddleware:
    """Pure ASGI middleware: sets the id, binds it for structlog, echoes it on the response."""

    def __init__(
        self,
        app: ASGIApp,
        trusted_proxies: Sequence[Network] = (),
        proxy_header: ProxyHeader = "x-forwarded-for",
    ) -> None:
        self.app = app
        self.trusted_proxies = list(trusted_proxies)
        self.proxy_header: ProxyHeader = proxy_header

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        request_id = incoming if _SAFE_ID.fullmatch(incoming) else uuid.uuid4().hex
        token = _request_id.set(request_id)
        client = scope.get("client")
        peer = client[0] if client else None
        headers = dict(scope["headers"])
        ip_token = _client_ip.set(
            client_ip(peer, scope["headers"], self.trusted_proxies, self.proxy_header)
        )
        agent_token = _user_agent.set(_clean_user_agent(headers.get(b"user-agent", b"")))
        structlog.contextvars.bind_contextvars(request_id=request_id)

        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode("latin-1")))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            # The last line of defence: log the traceback, answer a generic problem body.
            log.exception("unhandled_error", path=scope.get("path"), method=scope.get("method"))
            if started:
                raise
            await send_problem(
                send_with_id,
                scope,
                500,
                "Internal server error",
                "internal",
                "Something went wrong on our side. Quote the request id when reporting it.",
            )
        finally:
            structlog.contextvars.unbind_contextvars("request_id")
            _request_id.reset(token)
            _client_ip.reset(ip_token)
            _user_agent.reset(agent_token)


async def send_problem(
    send: Send,
    scope: Scope,
    status: int,
    title: str,
    slug: str,
    detail: str,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    """Send a problem+json response from raw ASGI (used where no Request exists yet)."""
    body = orjson.dumps(
        {
            "type": "https://tidings.dev/problems/" + slug,
            "title": title,
            "status": status,
            "detail": detail,
            "instance": scope.get("path", ""),
            "request_id": current_request_id(),
        }
    )
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/problem+json"),
                (b"content-length", str(len(body)).encode()),
                # this response may bypass the security-headers middleware: carry them here
                (b"x-content-type-options", b"nosniff"),
                (b"x-frame-options", b"DENY"),
                (b"referrer-policy", b"no-referrer"),
                (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"),
                (b"cache-control", b"no-store"),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
