"""What every sign-in provider client offers, and the errors they raise."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Protocol

import httpx2

from tidings.core.errors import AppError, BadRequest

ProviderKind = Literal["google", "github", "oidc"]


class ProviderUnavailable(AppError):
    """The provider could not be reached or answered something we cannot use."""

    status, title, slug = 502, "Bad gateway", "provider-unavailable"


class ProviderRejected(BadRequest):
    """The provider refused the sign-in (bad code, error parameter, invalid ID token...)."""

    title, slug = "Sign-in failed", "sign-in-failed"


@dataclass(frozen=True)
class ProviderProfile:
    """Who the provider says signed in. ``subject`` is the stable key; the rest is advice."""

    subject: str
    email: str | None
    email_verified: bool
    username_hints: tuple[str, ...] = ()
    display_name: str | None = None
    access_token: str | None = None
    refresh_token: str | None = None
    auth_time: float | None = None  # when the provider last authenticated the user (OIDC)


@dataclass(frozen=True)
class AuthorizationParams:
    """What our side of one flow sends to the provider (and must check when it comes back)."""

    state: str
    code_verifier: str
    redirect_uri: str  # our callback URL
    nonce: str | None = None
    max_age: int | None = None  # OIDC: ask the provider to authenticate the user afresh (0)


class ProviderClient(Protocol):
    name: str
    kind: ProviderKind
    display_name: str
    link_by_email: bool
    uses_nonce: bool

    async def authorization_url(self, http: httpx2.AsyncClient, params: AuthorizationParams) -> str:
        """Where to send the browser."""
        ...

    async def complete(
        self,
        http: httpx2.AsyncClient,
        params: AuthorizationParams,
        code: str,
        issuer: str | None,
    ) -> ProviderProfile:
        """Exchange the code (with the PKCE verifier) and establish who signed in."""
        ...


class JsonHttp:
    """Small helpers for JSON calls to providers: network and shape failures become 502s."""

    TIMEOUT: ClassVar[float] = 10.0

    def __init__(self, display_name: str) -> None:
        self.display_name = display_name

    def unavailable(self, what: str) -> ProviderUnavailable:
        return ProviderUnavailable(f"{self.display_name} {what}; try again later.")

    async def request(
        self, http: httpx2.AsyncClient, method: str, url: str, **kwargs: Any
    ) -> httpx2.Response:
        try:
            return await http.request(method, url, timeout=self.TIMEOUT, **kwargs)
        except httpx2.HTTPError as exc:
            raise self.unavailable("could not be reached") from exc

    def json(self, response: httpx2.Response) -> Any:
        try:
            return response.json()
        except ValueError as exc:
            raise self.unavailable("answered with something that is not JSON") from exc

    async def get_json(self, http: httpx2.AsyncClient, url: str, **kwargs: Any) -> Any:
        response = await self.request(http, "GET", url, **kwargs)
        if response.status_code != 200:
            raise self.unavailable(f"answered {response.status_code} for {url}")
        return self.json(response)


def as_bool(value: object) -> bool:
    """``email_verified`` is a boolean, though some providers send the string ``"true"``."""
    if isinstance(value, str):
        return value.strip().lower() == "true"
    return value is True
