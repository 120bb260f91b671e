"""The OIDC client's caching and failure handling, with canned HTTP answers (httpx2's
MockTransport: no network). The protocol itself is tested against a real provider in
tests/e2e/test_oauth_oidc.py."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import httpx2
import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey

from tidings.auth.providers.base import (
    AuthorizationParams,
    ProviderRejected,
    ProviderUnavailable,
)
from tidings.auth.providers.oidc import OIDCProvider

ISSUER = "https://sso.example"
PARAMS = AuthorizationParams(
    state="s", code_verifier="v" * 43, redirect_uri="https://api/cb", nonce="n1"
)


def discovery(issuer: str = ISSUER) -> dict[str, Any]:
    return {
        "issuer": issuer,
        "authorization_endpoint": f"{ISSUER}/auth",
        "token_endpoint": f"{ISSUER}/token",
        "jwks_uri": f"{ISSUER}/jwks",
        "id_token_signing_alg_values_supported": ["RS256"],
    }


def id_token(key: RSAKey, **changes: Any) -> str:
    now = int(time.time())
    claims = {"iss": ISSUER, "sub": "u1", "aud": "cid", "exp": now + 60, "iat": now}
    claims |= {"nonce": "n1", "email": "u1@example.com", "email_verified": "true"} | changes
    return jwt.encode({"alg": "RS256", "kid": key.kid}, claims, key, algorithms=["RS256"])


class Provider:
    """Canned answers; ``keys`` is what /jwks serves right now."""

    def __init__(self, keys: list[RSAKey], token: Callable[[], httpx2.Response]) -> None:
        self.keys = keys
        self.token = token
        self.metadata = discovery()
        self.calls: list[str] = []

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        path = request.url.path
        self.calls.append(path)
        if path == "/.well-known/openid-configuration":
            return httpx2.Response(200, json=self.metadata)
        if path == "/jwks":
            return httpx2.Response(
                200, json={"keys": [k.as_dict(private=False) for k in self.keys]}
            )
        if path == "/token":
            body = dict(httpx2.QueryParams(request.content.decode()))
            assert body["code_verifier"] == PARAMS.code_verifier
            assert request.headers["authorization"].startswith("Basic ")
            return self.token()
        return httpx2.Response(404)


def client() -> OIDCProvider:
    return OIDCProvider(
        "sso",
        display_name="SSO",
        client_id="cid",
        client_secret="secret:with/odd chars",
        issuer=ISSUER,
        scopes=["openid", "email"],
    )


async def test_a_rotated_signing_key_triggers_one_jwks_refresh() -> None:
    old = RSAKey.generate_key(2048, parameters={"kid": "old"})
    new = RSAKey.generate_key(2048, parameters={"kid": "new"})
    token = {"access_token": "at", "token_type": "Bearer"}
    fake = Provider([old], lambda: httpx2.Response(200, json=token | {"id_token": current}))
    provider = client()
    async with httpx2.AsyncClient(transport=httpx2.MockTransport(fake)) as http:
        current = id_token(old)
        profile = await provider.complete(http, PARAMS, "code", None)
        assert (profile.subject, profile.email, profile.email_verified) == (
            "u1",
            "u1@example.com",
            True,
        )
        fake.keys = [new]
        provider._jwks_at -= 60  # the last fetch is not too recent to refresh
        current = id_token(new)
        assert (await provider.complete(http, PARAMS, "code", None)).subject == "u1"
    assert fake.calls.count("/jwks") == 2
    assert fake.calls.count("/.well-known/openid-configuration") == 1


async def test_discovery_for_another_issuer_is_refused() -> None:
    fake = Provider([], lambda: httpx2.Response(500))
    fake.metadata = discovery("https://evil.example")
    async with httpx2.AsyncClient(transport=httpx2.MockTransport(fake)) as http:
        with pytest.raises(ProviderUnavailable, match="another issuer"):
            await client().authorization_url(http, PARAMS)


async def test_token_endpoint_failures_are_problems() -> None:
    key = RSAKey.generate_key(2048, parameters={"kid": "k"})
    refused = Provider([key], lambda: httpx2.Response(400, json={"error": "invalid_grant"}))
    async with httpx2.AsyncClient(transport=httpx2.MockTransport(refused)) as http:
        with pytest.raises(ProviderRejected, match="invalid_grant"):
            await client().complete(http, PARAMS, "code", None)
    broken = Provider([key], lambda: httpx2.Response(502, content=b"<html>"))
    async with httpx2.AsyncClient(transport=httpx2.MockTransport(broken)) as http:
        with pytest.raises(ProviderUnavailable, match="not JSON"):
            await client().complete(http, PARAMS, "code", None)
    no_id_token = Provider([key], lambda: httpx2.Response(200, json={"access_token": "at"}))
    async with httpx2.AsyncClient(transport=httpx2.MockTransport(no_id_token)) as http:
        with pytest.raises(ProviderRejected, match="no ID token"):
            await client().complete(http, PARAMS, "code", None)


async def test_an_unreachable_provider_is_a_502() -> None:
    def down(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ConnectError("connection refused", request=request)

    async with httpx2.AsyncClient(transport=httpx2.MockTransport(down)) as http:
        with pytest.raises(ProviderUnavailable, match="could not be reached") as caught:
            await client().authorization_url(http, PARAMS)
    assert caught.value.status == 502


async def test_the_response_iss_parameter_is_checked() -> None:
    fake = Provider([], lambda: httpx2.Response(500))
    fake.metadata = discovery() | {"authorization_response_iss_parameter_supported": True}
    async with httpx2.AsyncClient(transport=httpx2.MockTransport(fake)) as http:
        with pytest.raises(ProviderRejected, match="lacks the iss"):
            await client().complete(http, PARAMS, "code", None)
        with pytest.raises(ProviderRejected, match="another issuer"):
            await client().complete(http, PARAMS, "code", "https://evil.example")
    assert json.dumps(fake.calls).count("/token") == 0
