"""Refresh rotation under concurrency, sign-out, suspension, demotion, password change, keys.

Every test runs three times per backend: the access-token check reading the sign-in session from
the database, from the in-process row cache (``TIDINGS_ROW_CACHE=memory``, the embedded default)
and from the row cache in real Redis (``TIDINGS_ROW_CACHE=redis``), where sign-out, suspension,
demotion and password changes must apply on the very next request all the same.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import httpx2
import pytest
from redis.asyncio import Redis

from tests.conftest import make_settings
from tests.support.api import DEFAULT_PASSWORD, assert_problem, login, make_admin, sign_up
from tidings.core.container import Container
from tidings.core.keys import KeyMaterial, new_signing_key
from tidings.settings import Settings

REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture(
    params=["none", "memory", "redis"], ids=["db-check", "memory-check", "cached-check"]
)
async def settings(
    request: pytest.FixtureRequest, tmp_path: Path, database_url: str
) -> AsyncIterator[Settings]:
    if request.param in ("none", "memory"):
        yield make_settings(tmp_path / "data", database_url, row_cache=request.param)
        return
    prefix = f"test:sessions:{secrets.token_hex(6)}:"
    yield make_settings(
        tmp_path / "data",
        database_url,
        row_cache="redis",
        redis_url=REDIS_URL,
        cache_key_prefix=prefix,
    )
    redis = Redis.from_url(REDIS_URL)
    keys = [key async for key in redis.scan_iter(match=f"{prefix}*", count=1000)]
    if keys:
        await redis.delete(*keys)
    await redis.aclose()


async def test_the_cached_check_reads_the_session_from_redis(
    client: httpx2.AsyncClient, settings: Settings
) -> None:
    user = await sign_up(client, "cachedcheck")  # its /me fills the cache
    if settings.row_cache != "redis":
        pytest.skip("the database check has no cache")
    redis = Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        prefix = settings.cache_key_prefix
        sessions = [k async for k in redis.scan_iter(match=f"{prefix}session:*")]
        profiles = [k async for k in redis.scan_iter(match=f"{prefix}profile.v2:{user.user_id}")]
        assert len(sessions) == 1, sessions
        assert len(profiles) == 1, profiles
        # the cache is what answers: a forged entry saying "signed out" is believed
        await redis.set(sessions[0], f'{{"user_id": {user.user_id}, "revoked": true}}')
        assert_problem(await client.get("/api/v1/me", headers=user.headers), 401)
    finally:
        await redis.aclose()


async def _refresh(client: httpx2.AsyncClient, token: str) -> httpx2.Response:
    return await client.post(
        "/api/v1/auth/token", data={"grant_type": "refresh_token", "refresh_token": token}
    )


async def test_twenty_concurrent_refreshes_have_one_winner(client: httpx2.AsyncClient) -> None:
    user = await sign_up(client, "racer")
    responses = await asyncio.gather(*(_refresh(client, user.refresh_token) for _ in range(20)))
    statuses = sorted(r.status_code for r in responses)
    assert statuses.count(200) == 1, statuses
    assert statuses.count(400) == 19, statuses
    for response in responses:
        if response.status_code != 200:
            assert_problem(response, 400)


async def test_revoke_signs_out_the_session(client: httpx2.AsyncClient) -> None:
    user = await sign_up(client, "leaver")
    other = await login(client, "leaver")  # a second device keeps working
    response = await client.post("/api/v1/auth/revoke", data={"token": user.refresh_token})
    assert response.status_code == 200
    assert_problem(await _refresh(client, user.refresh_token), 400)
    assert_problem(await client.get("/api/v1/me", headers=user.headers), 401)
    assert (await client.get("/api/v1/me", headers=other.headers)).status_code == 200
    # RFC 7009: unknown tokens are not an error; an access token revokes its session too.
    assert (await client.post("/api/v1/auth/revoke", data={"token": "nonsense"})).status_code == 200
    assert (
        await client.post("/api/v1/auth/revoke", json={"token": other.access_token})
    ).status_code == 200
    assert_problem(await client.get("/api/v1/me", headers=other.headers), 401)
    assert_problem(await client.post("/api/v1/auth/revoke", data={"token_type_hint": "x"}), 400)


async def test_suspension_and_demotion_apply_on_next_request(
    client: httpx2.AsyncClient, container: Container
) -> None:
    await make_admin(container, "chief")
    admin = await login(client, "chief")
    mod = await sign_up(client, "mod_mia")
    promoted = await client.patch(
        "/api/v1/admin/users/mod_mia", json={"role": "admin"}, headers=admin.headers
    )
    assert promoted.status_code == 200
    assert (await client.get("/api/v1/admin/users", headers=mod.headers)).status_code == 200

    await client.patch("/api/v1/admin/users/mod_mia", json={"role": "user"}, headers=admin.headers)
    assert_problem(await client.get("/api/v1/admin/users", headers=mod.headers), 403)

    suspended = await client.patch(
        "/api/v1/admin/users/mod_mia", json={"suspended": True}, headers=admin.headers
    )
    assert suspended.json()["suspended"] is True
    assert_problem(await client.get("/api/v1/me", headers=mod.headers), 401)
    assert_problem(await _refresh(client, mod.refresh_token), 400)
    relogin = await client.post(
        "/api/v1/auth/token",
        data={"grant_type": "password", "username": "mod_mia", "password": DEFAULT_PASSWORD},
    )
    assert_problem(relogin, 400)
    assert_problem(await client.get("/api/v1/users/mod_mia"), 404)  # hidden from the public

    await client.patch(
        "/api/v1/admin/users/mod_mia", json={"suspended": False}, headers=admin.headers
    )
    assert (await login(client, "mod_mia")).username == "mod_mia"


async def test_admin_cannot_lock_themselves_out(
    client: httpx2.AsyncClient, container: Container
) -> None:
    await make_admin(container, "solo")
    admin = await login(client, "solo")
    for body in ({"role": "user"}, {"suspended": True}):
        response = await client.patch("/api/v1/admin/users/solo", json=body, headers=admin.headers)
        assert_problem(response, 409)
    assert_problem(
        await client.patch(
            "/api/v1/admin/users/ghost", json={"role": "user"}, headers=admin.headers
        ),
        404,
    )
    assert_problem(
        await client.patch(
            "/api/v1/admin/users/solo", json={"role": "emperor"}, headers=admin.headers
        ),
        422,
    )


async def test_admin_user_list_paginates(client: httpx2.AsyncClient, container: Container) -> None:
    await make_admin(container, "lister")
    admin = await login(client, "lister")
    for i in range(5):
        await sign_up(client, f"member{i}")
    seen: list[str] = []
    url = "/api/v1/admin/users?limit=2"
    pages = 0
    while url and pages < 10:
        response = await client.get(url, headers=admin.headers)
        assert response.status_code == 200, response.text
        body = response.json()
        seen += [u["username"] for u in body["data"]]
        assert len(body["data"]) <= 2
        if body["next_cursor"]:
            assert 'rel="next"' in response.headers["link"]
            url = response.headers["link"].split(";")[0].strip("<>")
        else:
            assert "link" not in response.headers
            url = ""
        pages += 1
    assert seen == ["member4", "member3", "member2", "member1", "member0", "lister"]
    assert_problem(await client.get("/api/v1/admin/users?limit=101", headers=admin.headers), 422)
    assert_problem(await client.get("/api/v1/admin/users?limit=0", headers=admin.headers), 422)
    assert_problem(await client.get("/api/v1/admin/users?cursor=%%%", headers=admin.headers), 400)
    assert_problem(
        await client.get("/api/v1/admin/users?cursor=eyJ2IjoxfQ", headers=admin.headers), 400
    )
    only_admins = await client.get("/api/v1/admin/users?role=admin", headers=admin.headers)
    assert [u["username"] for u in only_admins.json()["data"]] == ["lister"]


async def test_password_change_signs_out_everywhere(client: httpx2.AsyncClient) -> None:
    user = await sign_up(client, "pat")
    wrong = await client.post(
        "/api/v1/me/password",
        json={"current_password": "not-it-at-all", "new_password": "another-long-one"},
        headers=user.headers,
    )
    assert_problem(wrong, 422)
    changed = await client.post(
        "/api/v1/me/password",
        json={"current_password": DEFAULT_PASSWORD, "new_password": "another-long-one"},
        headers=user.headers,
    )
    assert changed.status_code == 204
    assert_problem(await client.get("/api/v1/me", headers=user.headers), 401)
    assert_problem(await _refresh(client, user.refresh_token), 400)
    assert (await login(client, "pat", "another-long-one")).username == "pat"


async def test_password_is_rehashed_when_parameters_change(
    client: httpx2.AsyncClient, container: Container
) -> None:
    from sqlalchemy import select

    from tidings.accounts.models import User
    from tidings.core.security import PasswordHasher
    from tidings.settings import Settings

    await sign_up(client, "quinn")
    stronger = Settings(**{**container.settings.model_dump(), "password_hash_time_cost": 2})
    container.hasher = PasswordHasher.from_settings(stronger)
    await login(client, "quinn")
    async with container.db.unit_of_work() as session:
        stored = (await session.execute(select(User.password_hash))).scalar_one()
    assert stored is not None
    assert "t=2" in stored


async def test_jwks_and_key_rotation(client: httpx2.AsyncClient, container: Container) -> None:
    user = await sign_up(client, "rotor")
    jwks = await client.get("/.well-known/jwks.json")
    assert jwks.status_code == 200
    keys = jwks.json()["keys"]
    assert [k["kid"] for k in keys] == [container.keys.active_kid]
    assert all("d" not in k for k in keys)  # never the private part

    from joserfc.jwk import KeySet

    fresh = new_signing_key()
    container.keys = KeyMaterial(
        container.keys.secret_key, KeySet([fresh, *container.keys.signing_keys.keys])
    )
    container.signer.keys = container.keys
    assert (await client.get("/api/v1/me", headers=user.headers)).status_code == 200
    again = await login(client, "rotor")
    assert (await client.get("/api/v1/me", headers=again.headers)).status_code == 200
    kids = [k["kid"] for k in (await client.get("/.well-known/jwks.json")).json()["keys"]]
    assert kids == [fresh.kid, keys[0]["kid"]]
