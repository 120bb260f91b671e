"""Rate limits with the real default budgets: headers, 429 + Retry-After, login throttling,
trusted proxies, and Redis as the shared store (failing open or closed when it is down)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx2
import pytest

from tests.conftest import make_settings
from tests.support.api import DEFAULT_PASSWORD, assert_problem, register
from tidings.app import create_app

OTHER_IP = "203.0.113.9"


@asynccontextmanager
async def limited_client(
    tmp_path: Path, database_url: str, **overrides: Any
) -> AsyncIterator[httpx2.AsyncClient]:
    overrides.setdefault("rate_limits", {})  # the real default budgets
    settings = make_settings(tmp_path / "rl", database_url, **overrides)
    app = create_app(settings)
    transport = httpx2.ASGITransport(app=app, client=("127.0.0.1", 40000))
    async with (
        app.router.lifespan_context(app),
        httpx2.AsyncClient(transport=transport, base_url="http://testserver") as client,
    ):
        yield client


def _login(username: str, password: str) -> dict[str, str]:
    return {"grant_type": "password", "username": username, "password": password}


async def _within_one_window(seconds: int, needed: float = 30.0) -> None:
    """Wait (at most ``needed`` s) until the rest of the current fixed window of ``seconds``
    (aligned to the epoch, as the limiter's are) is at least ``needed`` long: the sliding
    window counter weighs the previous window's hits down just after a boundary, so attempts
    that straddle one are counted a little short (the 6th of "5 per 15 minutes" got through
    once, in a CI run at xx:45:00)."""
    left = seconds - time.time() % seconds
    if left < needed:
        await asyncio.sleep(left + 0.5)


async def test_every_response_carries_rate_limit_headers(tmp_path: Path, database_url: str) -> None:
    async with limited_client(tmp_path, database_url) as client:
        response = await client.get("/api/v1/users/nobody_here")
        assert response.status_code == 404
        assert response.headers["ratelimit-policy"] == '"anonymous";q=300;w=300'
        assert response.headers["ratelimit"].startswith('"anonymous";r=299;')
        assert response.headers["x-ratelimit-limit"] == "300"


async def test_login_burst_is_throttled_but_the_owner_gets_in_from_elsewhere(
    tmp_path: Path, database_url: str
) -> None:
    await _within_one_window(15 * 60)  # the login_lockout budget: 5 per 15 minutes
    async with limited_client(tmp_path, database_url, trusted_proxies=["127.0.0.1/32"]) as client:
        await register(client, "victim")
        statuses = []
        for _ in range(400):
            response = await client.post(
                "/api/v1/auth/token", data=_login("victim", "wrong-password")
            )
            statuses.append(response.status_code)
            if response.status_code == 429:
                body = assert_problem(response, 429)
                assert int(response.headers["retry-after"]) >= 1
                assert body["retry_after"] >= 1
        assert not [s for s in statuses if s >= 500]
        assert statuses[:5] == [400] * 5  # the lockout budget: five failures
        assert set(statuses[5:]) == {429}
        # Right password, same client: still locked out.
        assert_problem(
            await client.post("/api/v1/auth/token", data=_login("victim", DEFAULT_PASSWORD)), 429
        )
        # Right password from another address (behind the trusted proxy): signed in.
        elsewhere = await client.post(
            "/api/v1/auth/token",
            data=_login("victim", DEFAULT_PASSWORD),
            headers={"X-Forwarded-For": OTHER_IP},
        )
        assert elsewhere.status_code == 200, elsewhere.text


async def test_unknown_accounts_are_throttled_like_real_ones(
    tmp_path: Path, database_url: str
) -> None:
    await _within_one_window(15 * 60)  # the login_lockout budget: 5 per 15 minutes
    async with limited_client(tmp_path, database_url) as client:
        await register(client, "realone")
        real = [
            (
                await client.post("/api/v1/auth/token", data=_login("realone", "nope-nope"))
            ).status_code
            for _ in range(7)
        ]
        ghost = [
            (
                await client.post("/api/v1/auth/token", data=_login("ghost_user", "nope-nope"))
            ).status_code
            for _ in range(7)
        ]
        assert real == ghost == [400] * 5 + [429] * 2


async def test_spoofed_forwarded_for_from_untrusted_peer_changes_nothing(
    tmp_path: Path, database_url: str
) -> None:
    async with limited_client(tmp_path, database_url) as client:  # no trusted proxies
        for i in range(10):
            response = await client.post(
                "/api/v1/accounts",
                json={
                    "username": f"spoof{i}",
                    "email": f"s{i}@example.com",
                    "password": DEFAULT_PASSWORD,
                },
                headers={"X-Forwarded-For": f"198.51.100.{i}"},
            )
            assert response.status_code == 201, response.text
        blocked = await client.post(
            "/api/v1/accounts",
            json={"username": "spoof99", "email": "s99@example.com", "password": DEFAULT_PASSWORD},
            headers={"X-Forwarded-For": "198.51.100.200", "Forwarded": "for=198.51.100.201"},
        )
        assert_problem(blocked, 429)
        assert blocked.headers["retry-after"]


async def test_redis_store_is_shared_between_app_instances(
    tmp_path: Path, database_url: str, backend: str
) -> None:
    if backend == "sqlite":
        pytest.skip("Redis-backed limits are exercised with PostgreSQL")
    import redis.asyncio as aioredis

    store = aioredis.Redis.from_url("redis://127.0.0.1:6379/0")
    try:
        await store.ping()
    except OSError:
        pytest.fail("Redis must be running for this test")
    async for key in store.scan_iter("tidings:rl*"):
        await store.delete(key)
    await store.aclose()
    overrides = {"rate_limit_storage": "redis", "rate_limits": {"register": "3/hour"}}
    async with (
        limited_client(tmp_path / "a", database_url, **overrides) as first,
        limited_client(tmp_path / "b", database_url, **overrides) as second,
    ):
        bodies = [
            {"username": f"shared{i}", "email": f"sh{i}@example.com", "password": DEFAULT_PASSWORD}
            for i in range(4)
        ]
        assert (await first.post("/api/v1/accounts", json=bodies[0])).status_code == 201
        assert (await second.post("/api/v1/accounts", json=bodies[1])).status_code == 201
        assert (await first.post("/api/v1/accounts", json=bodies[2])).status_code == 201
        assert_problem(await second.post("/api/v1/accounts", json=bodies[3]), 429)


async def test_redis_down_reads_fail_open_and_login_fails_closed(
    tmp_path: Path, database_url: str
) -> None:
    dead = {"rate_limit_storage": "redis", "redis_url": "redis://127.0.0.1:1/0"}
    async with limited_client(tmp_path, database_url, **dead) as client:
        reads = await asyncio.gather(*(client.get("/api/v1/users/nobody_here") for _ in range(5)))
        assert [r.status_code for r in reads] == [404] * 5  # served, per-process fallback
        login = await client.post("/api/v1/auth/token", data=_login("anyone", "whatever-1"))
        body = assert_problem(login, 503)
        assert login.headers["retry-after"] == "30"
        assert "paused" in body["detail"]
        ready = await client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["rate_limit_store"] == "degraded"
