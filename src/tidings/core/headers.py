"""Security headers on every response; ``no-store`` on authenticated ones."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

_ALWAYS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
]
_API_CSP = b"default-src 'none'; frame-ancestors 'none'"
_DOCS_CSP = (
    b"default-src 'none'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    b"img-src 'self' data:; connect-src 'self'; font-src 'self' data:; worker-src 'self' blob:; "
    b"frame-ancestors 'none'"
)


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp, docs_paths: tuple[str, ...] = ()) -> None:
        self.app = app
        self.docs_paths = docs_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        is_docs = any(path.startswith(p) for p in self.docs_paths)
        authed = any(k == b"authorization" for k, _ in scope["headers"])
        tls = scope.get("scheme") == "https"

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {k.lower() for k, _ in headers}
                extra = [h for h in _ALWAYS if h[0] not in present]
                if b"content-security-policy" not in present:
                    extra.append((b"content-security-policy", _DOCS_CSP if is_docs else _API_CSP))
                if tls:
                    extra.append((b"strict-transport-security", b"max-age=63072000"))
                if authed and b"cache-control" not in present:
                    extra.append((b"cache-control", b"no-store"))
                decision = scope.get("state", {}).get("rate_limit")
                if decision is not None and b"ratelimit" not in present:
                    extra += [
                        (k.lower().encode(), v.encode()) for k, v in decision.headers().items()
                    ]
                message["headers"] = headers + extra
            await send(message)

        await self.app(scope, receive, send_with_headers)
