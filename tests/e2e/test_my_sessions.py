"""``/api/v1/me/sessions``: where the account is signed in, and signing sessions out with the
password (ASVS 5.0 7.5.2), on SQLite and PostgreSQL through the HTTP API."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx2
from sqlalchemy import update

from tests.support.api import DEFAULT_PASSWORD, SignedIn, assert_problem, login, sign_up
from tests.support.rows import confirm_holder, drop_password
from tidings.auth.models import AuthSession
from tidings.core.container import Container
from tidings.core.db import utcnow

SESSIONS = "/api/v1/me/sessions"


async def _sign_in_as(client: httpx2.AsyncClient, name: str, agent: str) -> SignedIn:
    response = await client.post(
        "/api/v1/auth/token",
        data={"grant_type": "password", "username": name, "password": DEFAULT_PASSWORD},
        headers={"User-Agent": agent},
    )
    assert response.status_code == 200, response.text
    tokens = response.json()
    me = await client.get(
        "/api/v1/me", headers={"Authorization": f"Bearer {tokens['access_token']}"}
    )
    return SignedIn(name, me.json()["id"], tokens["access_token"], tokens["refresh_token"])


async def _list(client: httpx2.AsyncClient, user: SignedIn) -> list[dict[str, Any]]:
    response = await client.get(SESSIONS, headers=user.headers)
    assert response.status_code == 200, response.text
    data: list[dict[str, Any]] = response.json()["data"]
    return data


async def _refreshes(client: httpx2.AsyncClient, user: SignedIn) -> bool:
    response = await client.post(
        "/api/v1/auth/token",
        data={"grant_type": "refresh_token", "refresh_token": user.refresh_token},
    )
    return response.status_code == 200


async def test_the_holder_sees_their_sessions_and_signs_one_or_all_others_out(
    client: httpx2.AsyncClient,
) -> None:
    await sign_up(client, "alice")
    phone = await _sign_in_as(client, "alice", "Phone/1.0 (\x07bell)")
    laptop = await _sign_in_as(client, "alice", "Laptop/2.0")
    tablet = await _sign_in_as(client, "alice", "Tablet/3.0")
    other = await sign_up(client, "bob")
    listed = await _list(client, laptop)
    mine = {s["user_agent"]: s for s in listed}
    assert {"Phone/1.0 (bell)", "Laptop/2.0", "Tablet/3.0"} <= set(mine)  # control chars gone
    assert [s["current"] for s in listed].count(True) == 1
    assert mine["Laptop/2.0"]["current"] is True
    assert mine["Phone/1.0 (bell)"]["ip"]
    phone_id = mine["Phone/1.0 (bell)"]["id"]
    assert phone_id not in {s["id"] for s in await _list(client, other)}  # only one's own

    url = f"{SESSIONS}/{phone_id}"
    wrong = await client.request(
        "DELETE", url, json={"password": "nope-nope-1"}, headers=laptop.headers
    )
    assert assert_problem(wrong, 422)["errors"][0]["loc"] == ["body", "password"]
    assert (await client.get("/api/v1/me", headers=phone.headers)).status_code == 200
    theirs = await client.request(
        "DELETE", url, json={"password": DEFAULT_PASSWORD}, headers=other.headers
    )
    assert_problem(theirs, 404)  # bob cannot end alice's session, nor learn it exists

    ended = await client.request(
        "DELETE", url, json={"password": DEFAULT_PASSWORD}, headers=laptop.headers
    )
    assert ended.status_code == 204, ended.text
    assert_problem(await client.get("/api/v1/me", headers=phone.headers), 401)
    assert not await _refreshes(client, phone)
    assert phone_id not in {s["id"] for s in await _list(client, laptop)}
    again = await client.request(
        "DELETE", url, json={"password": DEFAULT_PASSWORD}, headers=laptop.headers
    )
    assert_problem(again, 404)

    others = await client.request(
        "DELETE", SESSIONS, json={"password": DEFAULT_PASSWORD}, headers=laptop.headers
    )
    assert others.status_code == 204, others.text
    assert [s["current"] for s in await _list(client, laptop)] == [True]  # only this one left
    assert_problem(await client.get("/api/v1/me", headers=tablet.headers), 401)
    assert await _refreshes(client, laptop)
    assert (await client.get("/api/v1/me", headers=other.headers)).status_code == 200


async def test_a_refresh_moves_last_used_and_the_list_needs_a_token(
    client: httpx2.AsyncClient, container: Container
) -> None:
    assert_problem(await client.get(SESSIONS), 401)
    user = await sign_up(client, "carol")
    [before] = await _list(client, user)
    async with container.db.unit_of_work(write=True) as session:  # last used ten minutes ago
        await session.execute(
            update(AuthSession)
            .where(AuthSession.id == int(before["id"]))
            .values(last_used_at=utcnow() - timedelta(minutes=10))
        )
    [aged] = await _list(client, user)
    response = await client.post(
        "/api/v1/auth/token",
        data={"grant_type": "refresh_token", "refresh_token": user.refresh_token},
    )
    assert response.status_code == 200, response.text
    fresh = SignedIn("carol", user.user_id, response.json()["access_token"], "")
    [after] = await _list(client, fresh)
    assert after["id"] == before["id"]  # the same session, rotated
    assert after["last_used_at"] > aged["last_used_at"]
    assert after["current"] is True
    await login(client, "carol")
    assert len(await _list(client, fresh)) == 2


async def test_an_account_without_a_password_needs_a_confirmation_through_its_provider(
    client: httpx2.AsyncClient, container: Container
) -> None:
    user = await sign_up(client, "provider_made")
    second = await login(client, "provider_made")
    await drop_password(container, int(user.user_id))  # as a provider makes it
    body = {"confirm_username": "provider_made"}
    for ago in (None, timedelta(minutes=11)):  # signed in just now does not count; too long ago
        await confirm_holder(container, int(user.user_id), ago)
        stale = await client.request("DELETE", SESSIONS, json=body, headers=user.headers)
        assert "confirm it is you" in assert_problem(stale, 403)["detail"]
        assert (await client.get("/api/v1/me", headers=second.headers)).status_code == 200
    await confirm_holder(container, int(user.user_id), timedelta(minutes=1))
    ended = await client.request("DELETE", SESSIONS, json=body, headers=user.headers)
    assert ended.status_code == 204, ended.text
    assert_problem(await client.get("/api/v1/me", headers=second.headers), 401)
