"""Every way to forge or misuse an access token is a 401 problem."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Callable
from typing import Any

import httpx2
import orjson
from joserfc import jwt
from joserfc.jwk import OKPKey

from tests.support.api import SignedIn, assert_problem, sign_up
from tidings.core.container import Container


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _segment(obj: dict[str, Any]) -> str:
    return _b64(orjson.dumps(obj))


def _claims(user: SignedIn, token: str, **changes: Any) -> dict[str, Any]:
    payload = token.split(".")[1]
    claims: dict[str, Any] = orjson.loads(base64.urlsafe_b64decode(payload + "=" * 4))
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


def _sign(container: Container, header: dict[str, Any], claims: dict[str, Any]) -> str:
    """Signed with OUR key: only the header/claims make these invalid."""
    full = {"alg": "Ed25519", "typ": "at+jwt", "kid": container.keys.active_kid, **header}
    full = {k: v for k, v in full.items() if v is not None}
    return jwt.encode(full, claims, container.keys.signing_keys, algorithms=["Ed25519"])


async def test_forged_and_misused_tokens_are_rejected(
    client: httpx2.AsyncClient, container: Container
) -> None:
    user = await sign_up(client, "target")
    good = user.access_token
    now = int(time.time())
    public_x = container.keys.public_jwks()["keys"][0]["x"]
    header_b64, payload_b64, _sig = good.split(".")

    def hs256_with_public_key() -> str:
        head = _segment({"alg": "HS256", "typ": "at+jwt", "kid": container.keys.active_kid})
        signing_input = f"{head}.{payload_b64}".encode()
        secret = base64.urlsafe_b64decode(public_x + "=" * 4)
        return (
            f"{head}.{payload_b64}.{_b64(hmac.new(secret, signing_input, hashlib.sha256).digest())}"
        )

    attacker = OKPKey.generate_key("Ed25519", parameters={"kid": "evil"})
    attacker_jwk = attacker.as_dict(private=False)

    cases: dict[str, Callable[[], str]] = {
        "alg none": lambda: f"{_segment({'alg': 'none', 'typ': 'at+jwt'})}.{payload_b64}.",
        "HS256 keyed with our public key": hs256_with_public_key,
        "unknown kid": lambda: jwt.encode(
            {"alg": "Ed25519", "typ": "at+jwt", "kid": "evil"},
            _claims(user, good),
            attacker,
            algorithms=["Ed25519"],
        ),
        "embedded jwk header": lambda: jwt.encode(
            {"alg": "Ed25519", "typ": "at+jwt", "jwk": attacker_jwk},
            _claims(user, good),
            attacker,
            algorithms=["Ed25519"],
        ),
        "jku header": lambda: jwt.encode(
            {"alg": "Ed25519", "typ": "at+jwt", "kid": "evil", "jku": "https://evil.example/k"},
            _claims(user, good),
            attacker,
            algorithms=["Ed25519"],
        ),
        "expired": lambda: _sign(
            container, {}, _claims(user, good, exp=now - 3600, iat=now - 7200)
        ),
        "not yet valid": lambda: _sign(container, {}, _claims(user, good, nbf=now + 3600)),
        "wrong audience": lambda: _sign(container, {}, _claims(user, good, aud="someone-else")),
        "wrong issuer": lambda: _sign(
            container, {}, _claims(user, good, iss="https://evil.example")
        ),
        "wrong typ": lambda: _sign(container, {"typ": "JWT"}, _claims(user, good)),
        "no typ": lambda: _sign(container, {"typ": None}, _claims(user, good)),
        "missing sub": lambda: _sign(container, {}, _claims(user, good, sub=None)),
        "missing exp": lambda: _sign(container, {}, _claims(user, good, exp=None)),
        "missing sid": lambda: _sign(container, {}, _claims(user, good, sid=None)),
        "missing jti": lambda: _sign(container, {}, _claims(user, good, jti=None)),
        "other user's session": lambda: _sign(container, {}, _claims(user, good, sid="123")),
        "tampered payload": lambda: ".".join(
            [header_b64, _segment(_claims(user, good, sub="1")), _sig]
        ),
        "refresh token as access token": lambda: user.refresh_token,
        "truncated": lambda: good[:-10],
        "empty": lambda: "",
    }
    for name, make in cases.items():
        token = make()
        response = await client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 401, (name, response.status_code, response.text)
        assert_problem(response, 401)
    # and the genuine token still works
    assert (await client.get("/api/v1/me", headers=user.headers)).status_code == 200
