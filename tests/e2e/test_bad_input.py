"""Bad input everywhere gets a problem+json 4xx — never a 500, never a partial write."""

from __future__ import annotations

import base64
import time

import httpx2
import orjson
import pytest
from joserfc import jwt
from joserfc.jwk import OKPKey

from tests.support.api import DEFAULT_PASSWORD, assert_problem, register, sign_up
from tidings.core.container import Container


async def test_malformed_json_is_400(client: httpx2.AsyncClient) -> None:
    response = await client.post(
        "/api/v1/accounts",
        content=b'{"username": "x",',
        headers={"content-type": "application/json"},
    )
    assert_problem(response, 400)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"username": 123, "email": "a@example.com", "password": DEFAULT_PASSWORD}, "username"),
        ({"username": "ab", "email": "a@example.com", "password": DEFAULT_PASSWORD}, "username"),
        (
            {"username": "a" * 31, "email": "a@example.com", "password": DEFAULT_PASSWORD},
            "username",
        ),
        (
            {"username": "bad-name", "email": "a@example.com", "password": DEFAULT_PASSWORD},
            "username",
        ),
        ({"username": "admin", "email": "a@example.com", "password": DEFAULT_PASSWORD}, "username"),
        ({"username": "okname", "email": "not-an-email", "password": DEFAULT_PASSWORD}, "email"),
        ({"username": "okname", "email": "a@example.com", "password": "short"}, "password"),
        ({"username": "okname", "email": "a@example.com", "password": "x" * 129}, "password"),
        (
            {
                "username": "okname",
                "email": "a@example.com",
                "password": DEFAULT_PASSWORD,
                "display_name": "d" * 51,
            },
            "display_name",
        ),
        (
            {
                "username": "okname",
                "email": "a@example.com",
                "password": DEFAULT_PASSWORD,
                "role": "admin",
            },
            "role",
        ),
        ({"username": "okname", "email": "a@example.com"}, "password"),
    ],
)
async def test_registration_validation_is_422_and_writes_nothing(
    client: httpx2.AsyncClient, container: Container, body: dict[str, object], field: str
) -> None:
    response = await client.post("/api/v1/accounts", json=body)
    problem = assert_problem(response, 422)
    assert any(field in err["loc"] for err in problem["errors"]), problem
    login = await client.post(
        "/api/v1/auth/token",
        data={"grant_type": "password", "username": "okname", "password": DEFAULT_PASSWORD},
    )
    assert_problem(login, 400)


async def test_duplicate_username_and_email_conflict(client: httpx2.AsyncClient) -> None:
    await register(client, "dana")
    same_name = await client.post(
        "/api/v1/accounts",
        json={"username": "DANA", "email": "other@example.com", "password": DEFAULT_PASSWORD},
    )
    assert_problem(same_name, 409)
    same_email = await client.post(
        "/api/v1/accounts",
        json={"username": "dana2", "email": "Dana@Example.com", "password": DEFAULT_PASSWORD},
    )
    assert_problem(same_email, 409)


@pytest.mark.parametrize(
    "body",
    [
        {"role": "admin"},
        {"email_verified": True},
        {"id": "1"},
        {"suspended": False},
        {"display_name": 5},
        {"bio": "b" * 301},
        {"avatar_url": "javascript:alert(1)"},
        {"website": "ftp://example.com"},
        {"display_name": "bad\x00name"},
    ],
)
async def test_patch_me_rejects_forbidden_and_bad_fields(
    client: httpx2.AsyncClient, body: dict[str, object]
) -> None:
    user = await sign_up(client, "erin")
    response = await client.patch("/api/v1/me", json=body, headers=user.headers)
    assert_problem(response, 422)
    me = (await client.get("/api/v1/me", headers=user.headers)).json()
    assert me["role"] == "user"
    assert me["display_name"] == "erin"
    assert me["bio"] == ""


async def test_patch_me_updates_allowed_fields(client: httpx2.AsyncClient) -> None:
    user = await sign_up(client, "fred")
    response = await client.patch(
        "/api/v1/me",
        json={"display_name": "Fred F", "bio": "hello", "avatar_url": "https://img.example/f.png"},
        headers=user.headers,
    )
    assert response.status_code == 200, response.text
    assert response.json()["display_name"] == "Fred F"
    assert response.json()["avatar_url"] == "https://img.example/f.png"
    profile = (await client.get("/api/v1/users/FRED")).json()
    assert profile["bio"] == "hello"
    assert "email" not in profile


def _b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(data)).rstrip(b"=").decode()


async def test_bad_tokens_are_401(client: httpx2.AsyncClient, container: Container) -> None:
    user = await sign_up(client, "gina")
    now = int(time.time())
    claims = {
        "iss": "tidings",
        "aud": "tidings-api",
        "sub": user.user_id,
        "sid": "1",
        "iat": now,
        "exp": now + 600,
        "jti": "x",
    }
    header, payload, signature = user.access_token.split(".")
    stranger = OKPKey.generate_key("Ed25519", parameters={"kid": container.keys.active_kid})
    forged_key = jwt.encode(
        {"alg": "Ed25519", "typ": "at+jwt", "kid": container.keys.active_kid},
        claims,
        stranger,
        algorithms=["Ed25519"],
    )
    expired = container.signer.issue(int(user.user_id), 1)
    expired_claims = {**claims, "exp": now - 3600, "iat": now - 7200}
    expired = ".".join([header, _b64(expired_claims), signature])
    alg_none = ".".join([_b64({"alg": "none", "typ": "at+jwt"}), payload, ""])
    tampered = ".".join([header, _b64({**claims, "sub": "1"}), signature])
    hs256 = ".".join([_b64({"alg": "HS256", "typ": "at+jwt"}), payload, signature])
    for token in (forged_key, expired, alg_none, tampered, hs256, "garbage", "a.b.c", "x" * 5000):
        response = await client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
        body = assert_problem(response, 401)
        assert "bearer" in response.headers["www-authenticate"].lower(), body
    assert_problem(await client.get("/api/v1/me"), 401)
    assert_problem(
        await client.get("/api/v1/me", headers={"Authorization": "Basic Zm9vOmJhcg=="}), 401
    )


async def test_really_expired_token_signed_by_us_is_401(
    client: httpx2.AsyncClient, container: Container
) -> None:
    user = await sign_up(client, "hank")
    container.signer.ttl_seconds = -120  # issue one already past exp + leeway
    stale = container.signer.issue(int(user.user_id), 1)
    response = await client.get("/api/v1/me", headers={"Authorization": f"Bearer {stale}"})
    assert_problem(response, 401)


async def test_token_endpoint_errors(client: httpx2.AsyncClient) -> None:
    await register(client, "ivan")
    cases = [
        ({"grant_type": "client_credentials"}, "unsupported_grant_type"),
        ({"grant_type": "password", "username": "ivan"}, "invalid_request"),
        ({"grant_type": "refresh_token"}, "invalid_request"),
        ({"grant_type": "refresh_token", "refresh_token": "nope"}, "invalid_grant"),
        ({"username": "ivan"}, "unsupported_grant_type"),
    ]
    for form, error in cases:
        body = assert_problem(await client.post("/api/v1/auth/token", data=form), 400)
        assert body["error"] == error, (form, body)
    wrong_type = await client.post(
        "/api/v1/auth/token", content=b"grant_type=password", headers={"content-type": "text/plain"}
    )
    assert_problem(wrong_type, 415)
    assert_problem(await client.post("/api/v1/auth/token"), 415)  # no body, no media type
    not_object = await client.post("/api/v1/auth/token", json=["grant_type", "password"])
    assert_problem(not_object, 400)
    broken = await client.post(
        "/api/v1/auth/token", content=b"{", headers={"content-type": "application/json"}
    )
    assert_problem(broken, 400)


async def test_login_does_not_reveal_accounts(client: httpx2.AsyncClient) -> None:
    await register(client, "judy")
    wrong_password = await client.post(
        "/api/v1/auth/token",
        data={"grant_type": "password", "username": "judy", "password": "not-her-password"},
    )
    no_such_user = await client.post(
        "/api/v1/auth/token",
        data={"grant_type": "password", "username": "nobody_here", "password": "whatever-1"},
    )
    a, b = assert_problem(wrong_password, 400), assert_problem(no_such_user, 400)
    for volatile in ("request_id", "instance"):
        a.pop(volatile, None)
        b.pop(volatile, None)
    assert a == b


async def test_oversized_body_is_413(client: httpx2.AsyncClient) -> None:
    big = b'{"username": "' + b"x" * 2_000_000 + b'"}'
    response = await client.post(
        "/api/v1/accounts", content=big, headers={"content-type": "application/json"}
    )
    assert_problem(response, 413)


async def test_unknown_route_and_method(client: httpx2.AsyncClient) -> None:
    assert_problem(await client.get("/api/v1/nothing-here"), 404)
    response = await client.delete("/api/v1/accounts")
    assert_problem(response, 405)
    assert "POST" in response.headers["allow"]


async def test_bad_path_and_query_params(client: httpx2.AsyncClient, container: Container) -> None:
    assert_problem(await client.get("/api/v1/users/not-valid!"), 422)
    assert_problem(await client.get("/api/v1/users/nobody_at_all"), 404)


async def test_nul_characters_are_422_not_500(client: httpx2.AsyncClient) -> None:
    registered = await client.post(
        "/api/v1/accounts",
        json={"username": "nully", "email": "n@example.com", "password": "pass\u0000word-long"},
    )
    assert_problem(registered, 422)
    login = await client.post(
        "/api/v1/auth/token",
        data={"grant_type": "password", "username": "x\u0000y", "password": DEFAULT_PASSWORD},
    )
    assert_problem(login, 400)
    user = await sign_up(client, "nully")
    post = await client.post("/api/v1/posts", json={"text": "a\u0000b"}, headers=user.headers)
    assert_problem(post, 422)
