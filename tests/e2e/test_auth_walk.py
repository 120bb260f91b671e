"""The scripted walk of the foundation issue, on SQLite and PostgreSQL."""

from __future__ import annotations

import httpx2

from tests.support.api import DEFAULT_PASSWORD, assert_problem, login, make_admin, register
from tidings.core.container import Container


async def _refresh(client: httpx2.AsyncClient, token: str) -> httpx2.Response:
    return await client.post(
        "/api/v1/auth/token", data={"grant_type": "refresh_token", "refresh_token": token}
    )


async def test_register_login_refresh_reuse_and_roles(
    client: httpx2.AsyncClient, container: Container
) -> None:
    created = await register(client, "alice", display_name="Alice A.")
    assert created["username"] == "alice"
    assert created["display_name"] == "Alice A."
    assert created["role"] == "user"
    assert isinstance(created["id"], str)
    assert "password" not in str(created)
    assert "password_hash" not in created

    token = await client.post(
        "/api/v1/auth/token",
        data={"grant_type": "password", "username": "alice", "password": DEFAULT_PASSWORD},
    )
    assert token.status_code == 200, token.text
    assert token.headers["cache-control"] == "no-store"
    pair = token.json()
    assert pair["token_type"] == "Bearer"
    assert pair["expires_in"] == 900
    first_refresh = pair["refresh_token"]

    me = await client.get("/api/v1/me", headers={"Authorization": f"Bearer {pair['access_token']}"})
    assert me.status_code == 200
    assert me.json()["email"] == "alice@example.com"
    assert me.headers["cache-control"] == "no-store"

    rotated = await _refresh(client, first_refresh)
    assert rotated.status_code == 200, rotated.text
    second_refresh = rotated.json()["refresh_token"]
    assert second_refresh != first_refresh

    reused = await _refresh(client, first_refresh)
    body = assert_problem(reused, 400)
    assert body["error"] == "invalid_grant"

    # Reuse revoked the whole family: the newer token and the access tokens are dead too.
    assert_problem(await _refresh(client, second_refresh), 400)
    new_access = rotated.json()["access_token"]
    dead = await client.get("/api/v1/me", headers={"Authorization": f"Bearer {new_access}"})
    assert_problem(dead, 401)

    await register(client, "bob")
    await make_admin(container, "root_admin")
    admin = await login(client, "root_admin")
    promoted = await client.patch(
        "/api/v1/admin/users/bob", json={"role": "moderator"}, headers=admin.headers
    )
    assert promoted.status_code == 200, promoted.text
    assert promoted.json()["role"] == "moderator"
    assert (await client.get("/api/v1/users/bob")).json()["role"] == "moderator"

    alice = await login(client, "alice")
    denied = await client.patch(
        "/api/v1/admin/users/bob", json={"role": "admin"}, headers=alice.headers
    )
    assert_problem(denied, 403)
    bob = await login(client, "bob")
    assert_problem(
        await client.patch(
            "/api/v1/admin/users/alice", json={"role": "admin"}, headers=bob.headers
        ),
        403,
    )


async def test_login_accepts_json_and_email(client: httpx2.AsyncClient) -> None:
    await register(client, "carol")
    response = await client.post(
        "/api/v1/auth/token",
        json={
            "grant_type": "password",
            "username": "CAROL@example.com",
            "password": DEFAULT_PASSWORD,
        },
    )
    assert response.status_code == 200, response.text
    assert response.json()["access_token"].count(".") == 2
