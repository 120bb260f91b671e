"""A stand-in for GitHub, served by uvicorn on a loopback port: the OAuth endpoints
(``/login/oauth/authorize``, ``/login/oauth/access_token``, PKCE S256 checked) and the REST
endpoints ``/user`` and ``/user/emails``, with GitHub's response shapes."""

from __future__ import annotations

import base64
import hashlib
import secrets
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route


@dataclass
class GitHubUser:
    id: int
    login: str
    name: str | None = None
    emails: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def with_email(cls, id: int, login: str, email: str, *, verified: bool = True) -> GitHubUser:
        entry = {"email": email, "primary": True, "verified": verified, "visibility": "private"}
        return cls(id=id, login=login, name=login.title(), emails=[entry])


@dataclass
class _Grant:
    user: GitHubUser
    client_id: str
    redirect_uri: str
    code_challenge: str


def _s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


class GitHubStandIn:
    def __init__(self, client_id: str, client_secret: str) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.signed_in_as: GitHubUser | None = None  # who "logs in" at /login/oauth/authorize
        self._codes: dict[str, _Grant] = {}
        self._tokens: dict[str, GitHubUser] = {}
        self.base_url = ""
        # called (on the stand-in's thread) while the code exchange is being answered
        self.on_token: Callable[[], None] | None = None
        self.app = Starlette(
            routes=[
                Route("/login/oauth/authorize", self.authorize),
                Route("/login/oauth/access_token", self.access_token, methods=["POST"]),
                Route("/user", self.user),
                Route("/user/emails", self.user_emails),
            ]
        )

    # --- OAuth --------------------------------------------------------------------------

    async def authorize(self, request: Request) -> Response:
        q = request.query_params
        if q.get("client_id") != self.client_id or q.get("code_challenge_method") != "S256":
            return Response("bad authorization request", status_code=400)
        redirect_uri = q["redirect_uri"]
        if self.signed_in_as is None:
            query = urlencode({"error": "access_denied", "state": q.get("state", "")})
            return RedirectResponse(f"{redirect_uri}?{query}", status_code=302)
        code = secrets.token_hex(10)
        self._codes[code] = _Grant(
            self.signed_in_as, self.client_id, redirect_uri, q["code_challenge"]
        )
        query = urlencode({"code": code, "state": q.get("state", "")})
        return RedirectResponse(f"{redirect_uri}?{query}", status_code=302)

    async def access_token(self, request: Request) -> Response:
        if self.on_token is not None:
            self.on_token()
        form = await request.form()
        grant = self._codes.pop(str(form.get("code", "")), None)
        if (
            form.get("client_id") != self.client_id
            or form.get("client_secret") != self.client_secret
        ):
            return self._error("incorrect_client_credentials", "The client_id and/or secret")
        if grant is None or grant.redirect_uri != form.get("redirect_uri"):
            return self._error("bad_verification_code", "The code passed is incorrect or expired.")
        if _s256(str(form.get("code_verifier", ""))) != grant.code_challenge:
            return self._error("bad_verification_code", "The code_verifier does not match.")
        token = "gho_" + secrets.token_hex(18)
        self._tokens[token] = grant.user
        return JSONResponse(
            {"access_token": token, "token_type": "bearer", "scope": "read:user,user:email"}
        )

    @staticmethod
    def _error(error: str, description: str) -> Response:
        # GitHub answers 200 with an error body.
        return JSONResponse(
            {
                "error": error,
                "error_description": description,
                "error_uri": "https://docs.github.com/apps/troubleshooting-oauth-app-access",
            }
        )

    # --- REST ---------------------------------------------------------------------------

    def _caller(self, request: Request) -> GitHubUser | None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        return self._tokens.get(token) if scheme.lower() in ("bearer", "token") else None

    async def user(self, request: Request) -> Response:
        user = self._caller(request)
        if user is None:
            return self._unauthorized()
        return JSONResponse(
            {
                "login": user.login,
                "id": user.id,
                "node_id": f"MDQ6VXNlcj{user.id}",
                "avatar_url": f"https://avatars.githubusercontent.com/u/{user.id}?v=4",
                "type": "User",
                "site_admin": False,
                "name": user.name,
                "email": None,  # the public email; the real address comes from /user/emails
                "created_at": "2020-01-01T00:00:00Z",
            }
        )

    async def user_emails(self, request: Request) -> Response:
        user = self._caller(request)
        if user is None:
            return self._unauthorized()
        return JSONResponse(user.emails)

    @staticmethod
    def _unauthorized() -> Response:
        body = {"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest"}
        return JSONResponse(body, status_code=401)

    # --- serving ------------------------------------------------------------------------

    def start(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        self.base_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        config = uvicorn.Config(
            self.app, log_level="warning", lifespan="off", ws="none", http="h11", loop="asyncio"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the GitHub stand-in did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
