"""The accounts you block or mute (`GET /api/v1/me/blocks`, `/api/v1/me/mutes`): newest first,
keyset pages, ids and names only; every entry can be removed, also once its account was
suspended or blocks you in turn. On SQLite and PostgreSQL."""

from __future__ import annotations

import httpx2

from tests.support.api import (
    DEFAULT_PASSWORD,
    SignedIn,
    assert_problem,
    login,
    make_admin,
    sign_up,
)
from tidings.core.container import Container

USERS = "/api/v1/users"


async def _names(client: httpx2.AsyncClient, who: SignedIn, kind: str) -> list[str]:
    listed = await client.get(f"/api/v1/me/{kind}", headers=who.headers)
    assert listed.status_code == 200, listed.text
    return [item["username"] for item in listed.json()["data"]]


async def _put(client: httpx2.AsyncClient, who: SignedIn, username: str, kind: str) -> None:
    done = await client.put(f"{USERS}/{username}/{kind}", headers=who.headers)
    assert done.status_code == 200, done.text


async def test_lists_are_newest_first_in_pages_and_only_your_own(
    client: httpx2.AsyncClient,
) -> None:
    ana = await sign_up(client, "ana")
    bob = await sign_up(client, "bob")
    for name in ("cyd", "dee", "eve"):
        await sign_up(client, name)
    for name in ("cyd", "dee", "eve"):
        await _put(client, ana, name, "block")
    await _put(client, ana, "bob", "mute")
    await _put(client, bob, "cyd", "block")

    assert await _names(client, ana, "blocks") == ["eve", "dee", "cyd"]
    assert await _names(client, ana, "mutes") == ["bob"]
    assert await _names(client, bob, "blocks") == ["cyd"]
    assert await _names(client, bob, "mutes") == []

    first = await client.get("/api/v1/me/blocks?limit=2", headers=ana.headers)
    body = first.json()
    assert [i["username"] for i in body["data"]] == ["eve", "dee"]
    item = body["data"][0]
    assert set(item) == {"id", "username", "since"}, item  # no profile
    assert isinstance(item["id"], str)
    rest = await client.get(
        f"/api/v1/me/blocks?limit=2&cursor={body['next_cursor']}", headers=ana.headers
    )
    assert [i["username"] for i in rest.json()["data"]] == ["cyd"]
    assert rest.json()["next_cursor"] is None

    assert_problem(await client.get("/api/v1/me/blocks"), 401)
    bad = await client.get("/api/v1/me/mutes?cursor=not-a-cursor", headers=ana.headers)
    assert bad.status_code in (400, 422)
    assert_problem(bad, bad.status_code)


async def test_every_entry_can_be_removed(client: httpx2.AsyncClient, container: Container) -> None:
    """A muted account that blocks you since, or a blocked one suspended since, answers 404
    to everything else of yours; your own entry for it still goes."""
    ana = await sign_up(client, "ana")
    fay = await sign_up(client, "fay")
    await sign_up(client, "gus")
    await _put(client, ana, "fay", "mute")
    await _put(client, fay, "ana", "block")
    await _put(client, ana, "gus", "block")
    await make_admin(container, "root_admin")
    admin = await login(client, "root_admin")
    suspended = await client.patch(
        "/api/v1/admin/users/gus", json={"suspended": True}, headers=admin.headers
    )
    assert suspended.status_code == 200, suspended.text

    assert_problem(await client.get(f"{USERS}/fay", headers=ana.headers), 404)
    assert_problem(await client.get(f"{USERS}/gus", headers=ana.headers), 404)
    assert await _names(client, ana, "mutes") == ["fay"]
    assert await _names(client, ana, "blocks") == ["gus"]
    unmuted = await client.delete(f"{USERS}/fay/mute", headers=ana.headers)
    assert unmuted.status_code == 204, unmuted.text
    unblocked = await client.delete(f"{USERS}/gus/block", headers=ana.headers)
    assert unblocked.status_code == 204, unblocked.text
    assert await _names(client, ana, "mutes") == []
    assert await _names(client, ana, "blocks") == []

    # without an entry of yours, such accounts stay hidden: 404 as before
    assert_problem(await client.delete(f"{USERS}/fay/mute", headers=ana.headers), 404)
    assert_problem(await client.delete(f"{USERS}/gus/block", headers=ana.headers), 404)
    assert_problem(await client.delete(f"{USERS}/nobody_here/block", headers=ana.headers), 404)


async def test_deleted_accounts_leave_the_lists(client: httpx2.AsyncClient) -> None:
    ana = await sign_up(client, "ana")
    hal = await sign_up(client, "hal")
    await _put(client, ana, "hal", "block")
    await _put(client, ana, "hal", "mute")
    gone = await client.request(
        "DELETE", "/api/v1/me", json={"password": DEFAULT_PASSWORD}, headers=hal.headers
    )
    assert gone.status_code == 202, gone.text
    assert await _names(client, ana, "blocks") == []
    assert await _names(client, ana, "mutes") == []
