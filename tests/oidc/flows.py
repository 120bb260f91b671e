"""Client-side steps of the sign-in flow, as an app and its user's browser take them."""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx2
from sqlalchemy import func, select, update

from tests.oidc.fixtures import APP_REDIRECT, CALLBACK_BASE
from tests.oidc.harness import browse_to_callback
from tests.support.api import DEFAULT_PASSWORD
from tidings.accounts.models import User
from tidings.audit.models import AuditEvent
from tidings.auth.models import AuthSession
from tidings.auth.providers.models import OAuthLoginCode, UserIdentity
from tidings.core.container import Container
from tidings.core.db import utcnow
from tidings.mail.models import OutgoingMail


@dataclass
class Pkce:
    verifier: str
    challenge: str

    @classmethod
    def new(cls) -> Pkce:
        verifier = secrets.token_urlsafe(48)
        digest = hashlib.sha256(verifier.encode()).digest()
        return cls(verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode())


def query_of(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query, keep_blank_values=True).items()}


async def authorize(client: httpx2.AsyncClient, provider: str, **params: str) -> httpx2.Response:
    return await client.get(f"/api/v1/auth/{provider}/authorize", params=params)


async def to_provider(
    client: httpx2.AsyncClient,
    provider: str,
    *,
    redirect_uri: str = APP_REDIRECT,
    pkce: Pkce | None = None,
    **params: str,
) -> str:
    """Start sign-in; the provider URL the browser is sent to (the state cookie is now set)."""
    if pkce is not None:
        params |= {"code_challenge": pkce.challenge, "code_challenge_method": "S256"}
    response = await authorize(client, provider, redirect_uri=redirect_uri, **params)
    assert response.status_code == 302, response.text
    return response.headers["location"]


async def through_provider(provider_url: str, login: str = "") -> str:
    """The user signs in at the provider; the callback URL the browser comes back to."""
    return await browse_to_callback(provider_url, login, CALLBACK_BASE)


async def back_to_app(client: httpx2.AsyncClient, callback: str) -> httpx2.Response:
    return await client.get(callback)


async def exchange(
    client: httpx2.AsyncClient, code: str, verifier: str | None = None, **extra: str
) -> httpx2.Response:
    data = {"grant_type": "authorization_code", "code": code, **extra}
    if verifier is not None:
        data["code_verifier"] = verifier
    return await client.post("/api/v1/auth/token", data=data)


@dataclass
class SignedIn:
    access_token: str
    refresh_token: str
    me: dict[str, Any]

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"}


async def sign_in(
    client: httpx2.AsyncClient, provider: str, login: str = "", *, redirect_uri: str = APP_REDIRECT
) -> SignedIn:
    """The whole browser-less walk: authorize → provider → callback → code → tokens → /me."""
    pkce = Pkce.new()
    provider_url = await to_provider(client, provider, redirect_uri=redirect_uri, pkce=pkce)
    back = await back_to_app(client, await through_provider(provider_url, login))
    assert back.status_code == 302, back.text
    location = back.headers["location"]
    assert location.startswith(redirect_uri.split("?")[0]), location
    code = query_of(location)["code"]
    tokens = await exchange(client, code, pkce.verifier)
    assert tokens.status_code == 200, tokens.text
    pair = tokens.json()
    headers = {"Authorization": f"Bearer {pair['access_token']}"}
    me = await client.get("/api/v1/me", headers=headers)
    assert me.status_code == 200, me.text
    return SignedIn(pair["access_token"], pair["refresh_token"], me.json())


async def step_up_callback(
    client: httpx2.AsyncClient, who: Any, provider: str, login: str = "", pkce: Pkce | None = None
) -> httpx2.Response:
    """``who`` starts confirming it is them through ``provider`` (with ``pkce``'s challenge),
    and a browser signs in there as ``login``: the response of the callback (a redirect to the
    app with ``?code=``)."""
    pkce = pkce or Pkce.new()
    started = await client.post(
        f"/api/v1/me/reauthentication/{provider}",
        json={"redirect_uri": APP_REDIRECT, "state": "step-up-1", "code_challenge": pkce.challenge},
        headers=who.headers,
    )
    assert started.status_code == 200, started.text
    opened = await client.get(started.json()["authorization_url"])
    assert opened.status_code == 302, opened.text
    return await back_to_app(client, await through_provider(opened.headers["location"], login))


async def step_up(
    client: httpx2.AsyncClient, who: Any, provider: str, login: str = ""
) -> httpx2.Response:
    """The whole confirmation: :func:`step_up_callback`, then ``who`` redeems the code its
    browser came back with; the response of that redemption."""
    pkce = Pkce.new()
    back = await step_up_callback(client, who, provider, login, pkce)
    assert back.status_code == 302, back.text
    code = query_of(back.headers["location"])["code"]
    return await client.post(
        "/api/v1/me/reauthentication",
        json={"code": code, "code_verifier": pkce.verifier},
        headers=who.headers,
    )


def proof(who: Any) -> dict[str, str]:
    """The holder's proof for linking and unlinking: the username typed out for an account a
    provider made (:class:`SignedIn` here, confirmed through the provider with
    :func:`step_up`), the suite's password for one registered with a password
    (``tests.support.api.SignedIn``)."""
    if hasattr(who, "me"):
        return {"confirm_username": who.me["username"]}
    return {"password": DEFAULT_PASSWORD}


async def unlink(client: httpx2.AsyncClient, who: Any, provider: str) -> httpx2.Response:
    return await client.request(
        "DELETE", f"/api/v1/me/identities/{provider}", json=proof(who), headers=who.headers
    )


async def link(
    client: httpx2.AsyncClient, who: Any, provider: str, login: str = ""
) -> httpx2.Response:
    """Link ``provider`` to ``who``'s account: start, open the URL in the browser, come back."""
    started = await client.post(
        f"/api/v1/me/identities/{provider}",
        json={"redirect_uri": APP_REDIRECT, "state": "link-1", **proof(who)},
        headers=who.headers,
    )
    assert started.status_code == 200, started.text
    opened = await client.get(started.json()["authorization_url"])
    assert opened.status_code == 302, opened.text
    return await back_to_app(client, await through_provider(opened.headers["location"], login))


async def session_count(container: Container) -> int:
    async with container.db.unit_of_work(write=False) as session:
        return int(await session.scalar(select(func.count()).select_from(AuthSession)) or 0)


async def audit_actions(container: Container, actor_id: int) -> list[str]:
    async with container.db.unit_of_work(write=False) as session:
        rows = await session.scalars(
            select(AuditEvent.action)
            .where(AuditEvent.actor_id == actor_id)
            .order_by(AuditEvent.seq)
        )
        return list(rows)


async def user_count(container: Container) -> int:
    async with container.db.unit_of_work(write=False) as session:
        return int(await session.scalar(select(func.count()).select_from(User)) or 0)


async def identity_rows(container: Container, user_id: int) -> list[UserIdentity]:
    async with container.db.unit_of_work(write=False) as session:
        rows = await session.scalars(select(UserIdentity).where(UserIdentity.user_id == user_id))
        return list(rows)


async def mail_subjects(container: Container, address: str) -> list[str]:
    """The subjects of the messages queued for ``address``, oldest first (the app's own mail
    loop must be kept from sending them: ``mail_interval_seconds`` of an hour)."""
    async with container.db.unit_of_work(write=False) as session:
        rows = await session.scalars(
            select(OutgoingMail.subject)
            .where(OutgoingMail.to_address == address)
            .order_by(OutgoingMail.id)
        )
        return list(rows)


async def expire_login_codes(container: Container) -> None:
    async with container.db.unit_of_work(write=True) as session:
        await session.execute(
            update(OAuthLoginCode).values(expires_at=utcnow() - timedelta(seconds=1))
        )
