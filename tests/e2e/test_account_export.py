"""``GET /api/v1/me/export``: everything stored about the account, and nothing of anyone else's
(on SQLite and PostgreSQL, through the HTTP API)."""

from __future__ import annotations

import json
from typing import Any

import httpx2
import pytest

from tests.support.api import DEFAULT_PASSWORD, SignedIn, assert_problem, login, sign_up
from tidings.accounts import export
from tidings.accounts.models import User
from tidings.accounts.schemas import Account, AccountExport
from tidings.core.container import Container
from tidings.core.db import Database


async def _ok(response: httpx2.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json() if response.content else None


async def _post(client: httpx2.AsyncClient, user: SignedIn, **body: Any) -> str:
    made = await _ok(await client.post("/api/v1/posts", json=body, headers=user.headers), 201)
    return str(made["id"])


async def test_the_export_holds_what_the_account_made_and_nothing_of_others(
    client: httpx2.AsyncClient, container: Container
) -> None:
    alice = await sign_up(client, "alice", display_name="Alice A.")
    bob = await sign_up(client, "bob")
    await sign_up(client, "carol")
    kept = await _post(client, alice, text="kept #tag", links=["https://a.test/1"])
    gone = await _post(client, alice, text="deleted later")
    await _ok(await client.delete(f"/api/v1/posts/{gone}", headers=alice.headers), 204)
    bobs = await _post(client, bob, text="bob's")
    await _ok(await client.put(f"/api/v1/posts/{bobs}/like", headers=alice.headers))
    await _ok(await client.put(f"/api/v1/posts/{kept}/like", headers=bob.headers))
    share = await _ok(await client.post(f"/api/v1/posts/{bobs}/share", headers=alice.headers), 201)
    url = f"/api/v1/posts/{bobs}/comments"
    comment = await _ok(await client.post(url, json={"text": "hi bob"}, headers=alice.headers), 201)
    await _ok(await client.post(url, json={"text": "bob's own"}, headers=bob.headers), 201)
    await _ok(await client.put("/api/v1/users/bob/follow", headers=alice.headers))
    await _ok(await client.put("/api/v1/users/alice/follow", headers=bob.headers))
    await _ok(await client.put("/api/v1/users/carol/mute", headers=alice.headers))
    await _ok(await client.put("/api/v1/users/carol/block", headers=alice.headers))
    body = {"post_id": bobs, "reason": "spam", "note": "my note"}
    report = await _ok(await client.post("/api/v1/reports", json=body, headers=alice.headers), 201)

    response = await client.get("/api/v1/me/export", headers=alice.headers)
    data = await _ok(response)
    disposition = response.headers["content-disposition"]
    assert disposition == 'attachment; filename="tidings-export-alice.json"'
    assert data["format"] == "tidings-export/1"
    assert data["exported_at"].endswith("Z")
    account = data["account"]
    assert (account["username"], account["email"]) == ("alice", "alice@example.com")
    assert account["display_name"] == "Alice A."
    assert "password_hash" not in str(data)
    assert [s["revoked_at"] for s in data["sessions"]] == [None]
    posts = {p["id"]: p for p in data["posts"]}
    assert set(posts) == {kept, gone, share["share_id"]}
    assert posts[kept]["text"] == "kept #tag"
    assert posts[kept]["links"] == ["https://a.test/1"]
    assert posts[kept]["deleted_at"] is None
    assert posts[gone]["deleted_at"] is not None  # still stored: exported
    assert posts[share["share_id"]]["share_of_id"] == bobs
    assert [(c["id"], c["text"], c["post_id"]) for c in data["comments"]] == [
        (comment["id"], "hi bob", bobs)
    ]
    assert [like["post_id"] for like in data["likes"]] == [bobs]
    assert [r["username"] for r in data["following"]] == ["bob"]
    assert [r["username"] for r in data["followers"]] == ["bob"]
    assert [r["username"] for r in data["mutes"]] == ["carol"]
    assert [r["username"] for r in data["blocks"]] == ["carol"]
    assert [(r["id"], r["note"]) for r in data["reports"]] == [(report["id"], "my note")]
    assert data["identities"] == []

    theirs = await _ok(await client.get("/api/v1/me/export", headers=bob.headers))
    assert {p["id"] for p in theirs["posts"]} == {bobs}
    assert [like["post_id"] for like in theirs["likes"]] == [kept]
    assert theirs["reports"] == []
    assert theirs["blocks"] == theirs["mutes"] == []


async def test_the_export_needs_a_live_signed_in_account(client: httpx2.AsyncClient) -> None:
    assert_problem(await client.get("/api/v1/me/export"), 401)
    user = await sign_up(client, "leaving")
    assert (await client.get("/api/v1/me/export", headers=user.headers)).status_code == 200
    body = {"password": DEFAULT_PASSWORD}
    deleted = await client.request("DELETE", "/api/v1/me", json=body, headers=user.headers)
    assert deleted.status_code == 202, deleted.text
    assert_problem(await client.get("/api/v1/me/export", headers=user.headers), 401)


async def test_the_export_streams_long_lists_in_pages_and_matches_its_schema(
    client: httpx2.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Lists longer than a page come whole and in order, across page boundaries."""
    monkeypatch.setattr(export, "PAGE", 2)
    star = await sign_up(client, "star")
    fans = [await sign_up(client, f"fan{i}") for i in range(5)]
    made = [await _post(client, star, text=f"post {i}") for i in range(5)]
    for fan in fans:
        await _ok(await client.put("/api/v1/users/star/follow", headers=fan.headers))
    await _ok(await client.put("/api/v1/users/fan0/follow", headers=star.headers))
    for post_id in made:
        await _ok(await client.put(f"/api/v1/posts/{post_id}/like", headers=star.headers))
    again = [await login(client, "star") for _ in range(2)]  # three sessions in all

    response = await client.get("/api/v1/me/export", headers=again[-1].headers)
    data = await _ok(response)
    AccountExport.model_validate(data)  # the documented shape, whatever the paging
    assert [p["id"] for p in data["posts"]] == made  # oldest first, across three pages
    assert [like["post_id"] for like in data["likes"]] == made
    assert [r["username"] for r in data["followers"]] == [f"fan{i}" for i in range(5)]
    assert [r["username"] for r in data["following"]] == ["fan0"]
    ids = [s["id"] for s in data["sessions"]]
    assert len(ids) == 3
    assert ids == sorted(ids, reverse=True)  # newest first
    assert data["comments"] == data["blocks"] == data["mutes"] == data["reports"] == []


async def test_the_stream_holds_no_database_connection_while_it_waits_for_the_client(
    client: httpx2.AsyncClient, container: Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client reading slowly (or gone) leaves the generator paused at a chunk: no pooled
    connection may be held then, or a few slow downloads would starve every other request."""
    monkeypatch.setattr(export, "PAGE", 2)
    user = await sign_up(client, "slowreader")
    for i in range(5):
        await _post(client, user, text=f"post {i}")
    db = Database(container.db.url, pool_size=2)  # its own pool: only the stream uses it
    try:
        async with db.unit_of_work(write=False) as session:
            account = Account.model_validate(await session.get(User, int(user.user_id)))
        pool = db.engine.pool
        chunks = []
        async for chunk in export.stream_export(db, int(user.user_id), account):
            assert pool.checkedout() == 0  # type: ignore[attr-defined]
            chunks.append(chunk)
    finally:
        await db.dispose()
    data = json.loads(b"".join(chunks))
    assert [p["text"] for p in data["posts"]] == [f"post {i}" for i in range(5)]
