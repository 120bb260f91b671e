"""Small helpers that drive the HTTP API the way a client would."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx2

DEFAULT_PASSWORD = "correct-horse-battery"


@dataclass
class SignedIn:
    username: str
    user_id: str
    access_token: str
    refresh_token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"}


async def register(
    client: httpx2.AsyncClient, username: str, password: str = DEFAULT_PASSWORD, **extra: Any
) -> dict[str, Any]:
    body = {
        "username": username,
        "email": f"{username.lower()}@example.com",
        "password": password,
        **extra,
    }
    response = await client.post("/api/v1/accounts", json=body)
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()
    return data


async def login(
    client: httpx2.AsyncClient, username: str, password: str = DEFAULT_PASSWORD
) -> SignedIn:
    response = await client.post(
        "/api/v1/auth/token",
        data={"grant_type": "password", "username": username, "password": password},
    )
    assert response.status_code == 200, response.text
    tokens = response.json()
    me = await client.get(
        "/api/v1/me", headers={"Authorization": f"Bearer {tokens['access_token']}"}
    )
    assert me.status_code == 200, me.text
    return SignedIn(username, me.json()["id"], tokens["access_token"], tokens["refresh_token"])


async def sign_up(client: httpx2.AsyncClient, username: str, **extra: Any) -> SignedIn:
    await register(client, username, **extra)
    return await login(client, username)


def assert_problem(response: httpx2.Response, status: int) -> dict[str, Any]:
    """The response is an RFC 9457 problem with this status."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json"), response.headers
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["type"].startswith("https://")
    assert body["title"]
    assert body["detail"]
    assert "Traceback" not in response.text
    return body


async def make_admin(container: Any, username: str, password: str = DEFAULT_PASSWORD) -> None:
    """Create an admin the way `tidings users create-admin` does (straight through the service)."""
    from tidings.accounts.schemas import RegisterRequest
    from tidings.accounts.service import create_admin

    cmd = RegisterRequest(username=username, email=f"{username}@example.com", password=password)
    async with container.db.unit_of_work(write=True) as session:
        await create_admin(session, container.hasher, cmd)
