"""Rate limits with the real default budgets: headers, 429 + Retry-After, login throttling,
trusted proxies, and Redis as the shared store (failing open or closed when it is down)."""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx2
import pytest

from tests.conftest import make_settings
from tests.support.api import (
    DEFAULT_PASSWORD,
    assert_problem,
    login,
    make_admin,
    register,
    sign_up,
)
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
    async with limited_client(
        tmp_path, database_url, trusted_proxies=["127.0.0.1/32"], proxy_header="x-forwarded-for"
    ) as client:
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
        # The proxy sets X-Forwarded-For only: a Forwarded header the client sends is not read.
        assert_problem(
            await client.post(
                "/api/v1/auth/token",
                data=_login("victim", DEFAULT_PASSWORD),
                headers={"Forwarded": f"for={OTHER_IP}"},
            ),
            429,
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


# --- the write budgets -----------------------------------------------------------------------

WRITE_BUDGETS = (
    "post_create",
    "comment_create",
    "follow",
    "like",
    "share",
    "webhook_create",
    "report_create",
)


@pytest.mark.parametrize("policy", WRITE_BUDGETS)
async def test_each_write_budget_refuses_past_its_limit_and_writes_nothing(
    tmp_path: Path, database_url: str, policy: str
) -> None:
    """Every spam-prone write has its own budget (here 2 an hour): the third call is a 429
    problem with Retry-After, and it changes nothing."""
    async with limited_client(
        tmp_path,
        database_url,
        rate_limits={policy: "2/hour"},
        webhook_allowed_hosts=["127.0.0.1/32"],
    ) as client:
        container = client._transport.app.state.container  # type: ignore[attr-defined]
        author = await sign_up(client, "author")
        others = [await sign_up(client, f"other{i}") for i in range(3)]
        posts = []
        for i, by in enumerate((author, author, others[2])):  # within a post budget of 2
            made = await client.post(
                "/api/v1/posts", json={"text": f"post {i}"}, headers=by.headers
            )
            assert made.status_code == 201, made.text
            posts.append(made.json()["id"])
        actor = others[0]
        if policy == "webhook_create":
            await make_admin(container, "the_admin")
            actor = await login(client, "the_admin")

        async def act(i: int) -> httpx2.Response:
            h = actor.headers
            match policy:
                case "post_create":
                    return await client.post("/api/v1/posts", json={"text": f"n{i}"}, headers=h)
                case "comment_create":
                    url = f"/api/v1/posts/{posts[0]}/comments"
                    return await client.post(url, json={"text": f"c{i}"}, headers=h)
                case "follow":
                    name = ["author", "other1", "other2"][i]
                    return await client.put(f"/api/v1/users/{name}/follow", headers=h)
                case "like":
                    return await client.put(f"/api/v1/posts/{posts[i]}/like", headers=h)
                case "share":
                    return await client.post(f"/api/v1/posts/{posts[i]}/share", headers=h)
                case "webhook_create":
                    body = {"url": f"http://127.0.0.1:9/hook{i}", "event_types": ["*"]}
                    return await client.post("/api/v1/webhooks", json=body, headers=h)
                case _:
                    body = {"post_id": posts[i], "reason": "spam"}
                    return await client.post("/api/v1/reports", json=body, headers=h)

        async def effects() -> int:
            """How many of the three calls left something behind."""
            h = actor.headers
            match policy:
                case "post_create":
                    page = await client.get(f"/api/v1/users/{actor.username}/posts", headers=h)
                    return len(page.json()["data"])
                case "comment_create":
                    page = await client.get(f"/api/v1/posts/{posts[0]}/comments", headers=h)
                    return len(page.json()["data"])
                case "follow":
                    page = await client.get(f"/api/v1/users/{actor.username}/following")
                    return len(page.json()["data"])
                case "webhook_create":
                    return len((await client.get("/api/v1/webhooks", headers=h)).json()["data"])
                case "report_create":  # the reports of the third post, as an admin sees them
                    await make_admin(container, "the_admin")
                    admin = await login(client, "the_admin")
                    page = await client.get(
                        "/api/v1/moderation/reports",
                        params={"target_id": posts[2]},
                        headers=admin.headers,
                    )
                    return 2 + len(page.json()["data"])
                case _:  # like, share: the third post's counts
                    counts = (await client.get(f"/api/v1/posts/{posts[2]}", headers=h)).json()[
                        "counts"
                    ]
                    return 2 + counts["likes"] + counts["shares"]

        for i in range(2):
            done = await act(i)
            assert done.status_code in (200, 201), (policy, done.text)
        refused = await act(2)
        body = assert_problem(refused, 429)
        assert int(refused.headers["retry-after"]) > 0, body
        assert refused.headers["ratelimit-policy"].startswith(f'"{policy}";q=2;')
        assert await effects() == 2


async def test_a_password_reset_ends_the_lockout_from_the_client_that_used_it(
    tmp_path: Path, database_url: str
) -> None:
    """Locked out after failed sign-ins, the owner resets the password through the mailed link
    (written by the real mail loop's development backend) and signs in at once."""
    await _within_one_window(15 * 60)
    async with limited_client(tmp_path, database_url, mail_interval_seconds=0.1) as client:
        await register(client, "forgetful")
        statuses = [
            (
                await client.post("/api/v1/auth/token", data=_login("forgetful", "wrong-1234"))
            ).status_code
            for _ in range(6)
        ]
        assert statuses == [400] * 5 + [429]
        asked = await client.post(
            "/api/v1/auth/password-reset", json={"email": "forgetful@example.com"}
        )
        assert asked.status_code == 202, asked.text
        mail_dir = tmp_path / "rl" / "mail"
        for _ in range(100):  # the loop's pass every 0.1 s: at most 10 s
            files = list(mail_dir.glob("*.eml")) if mail_dir.exists() else []
            if files:
                break
            await asyncio.sleep(0.1)
        [mail] = files
        token = re.search(r"code:\n\n(\S+)\n", mail.read_text()).group(1)  # type: ignore[union-attr]
        new = "a-fresh-staple-after-reset"
        done = await client.post(
            "/api/v1/auth/password-reset/confirm", json={"token": token, "new_password": new}
        )
        assert done.status_code == 204, done.text
        again = await client.post("/api/v1/auth/token", data=_login("forgetful", new))
        assert again.status_code == 200, again.text


async def test_wrong_passwords_typed_again_lock_out_the_session_not_the_owner(
    tmp_path: Path, database_url: str
) -> None:
    """A stolen access token is no password oracle: wrong passwords on the routes that ask
    for it again (delete the account, sign sessions out, change it) share one lockout per
    sign-in session, each is audited, and the owner signing in elsewhere is not locked out."""
    await _within_one_window(15 * 60)  # the reauth_lockout budget: 5 per 15 minutes
    async with limited_client(tmp_path, database_url) as client:
        container = client._transport.app.state.container  # type: ignore[attr-defined]
        await make_admin(container, "the_admin")
        admin = await login(client, "the_admin")
        thief = await sign_up(client, "holder")
        guesses = [
            ("DELETE", "/api/v1/me", {"password": "guess-number-0"}),
            ("DELETE", "/api/v1/me/sessions", {"password": "guess-number-1"}),
            (
                "POST",
                "/api/v1/me/password",
                {"current_password": "guess-number-2", "new_password": "a-new-long-one"},
            ),
            ("DELETE", "/api/v1/me", {"password": "guess-number-3"}),
            ("DELETE", "/api/v1/me", {"password": "guess-number-4"}),
        ]
        for method, path, body in guesses:
            wrong = await client.request(method, path, json=body, headers=thief.headers)
            problem = assert_problem(wrong, 422)
            assert problem["errors"][0]["msg"] == "does not match"
        # The sixth try is refused before the password is looked at, even the right one.
        for method, path, body in (
            ("DELETE", "/api/v1/me", {"password": DEFAULT_PASSWORD}),
            (
                "POST",
                "/api/v1/me/password",
                {"current_password": DEFAULT_PASSWORD, "new_password": "a-new-long-one"},
            ),
        ):
            refused = await client.request(method, path, json=body, headers=thief.headers)
            problem = assert_problem(refused, 429)
            assert "wrong passwords" in problem["detail"]
            assert int(refused.headers["retry-after"]) >= 1
        assert (await client.get("/api/v1/me", headers=thief.headers)).status_code == 200
        # The owner, signed in afresh, is not locked out: they end the other session.
        owner = await login(client, "holder")
        sessions = (await client.get("/api/v1/me/sessions", headers=owner.headers)).json()["data"]
        other = next(s["id"] for s in sessions if not s["current"])
        ended = await client.request(
            "DELETE",
            f"/api/v1/me/sessions/{other}",
            json={"password": DEFAULT_PASSWORD},
            headers=owner.headers,
        )
        assert ended.status_code == 204, ended.text
        assert_problem(await client.get("/api/v1/me", headers=thief.headers), 401)
        # Each wrong password left an audit event naming the session it came from.
        audit = await client.get(
            "/api/v1/admin/audit-events",
            params={"action": "auth:reauth_failed"},
            headers=admin.headers,
        )
        assert audit.status_code == 200, audit.text
        events = audit.json()["data"]
        assert len(events) == 5
        assert {(e["target_type"], str(e["target_id"])) for e in events} == {("session", other)}
        assert {e["actor_id"] for e in events} == {owner.user_id}


@pytest.mark.parametrize("storage", ["memory", "redis"])
async def test_parallel_guesses_cannot_overrun_the_lockouts(
    tmp_path: Path, database_url: str, storage: str
) -> None:
    """Twelve wrong passwords sent at once, to the sign-in and to a route that asks for the
    password again: five are looked at, the rest refused — each attempt is counted before its
    password is checked, not after (when all twelve would have passed the check)."""
    await _within_one_window(15 * 60)  # both lockouts: 5 per 15 minutes
    # Redis is shared by every run on the machine: a name of this run's own keys its counts
    name = f"burst_{secrets.token_hex(4)}"
    async with limited_client(tmp_path, database_url, rate_limit_storage=storage) as client:
        user = await sign_up(client, name)
        sign_ins = await asyncio.gather(
            *(
                client.post("/api/v1/auth/token", data=_login(name, f"wrong-{i}"))
                for i in range(12)  # bounded
            )
        )
        assert sorted(r.status_code for r in sign_ins) == [400] * 5 + [429] * 7
        guesses = await asyncio.gather(
            *(
                client.request(
                    "DELETE",
                    "/api/v1/me/sessions",
                    json={"password": f"wrong-{i}"},
                    headers=user.headers,
                )
                for i in range(12)  # bounded
            )
        )
        assert sorted(r.status_code for r in guesses) == [422] * 5 + [429] * 7
        # the right password from this session is refused too now, and counts nothing
        right = {"password": DEFAULT_PASSWORD}
        refused = await client.request(
            "DELETE", "/api/v1/me/sessions", json=right, headers=user.headers
        )
        assert_problem(refused, 429)
