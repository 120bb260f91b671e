"""Bookmarks through the HTTP API, on SQLite and PostgreSQL: saved for the viewer alone,
listed newest first, idempotent; what the viewer can no longer see is left out of the list
but can still be removed; a share bookmarks the post it shares; the export lists them and
erasure removes them."""

from __future__ import annotations

from typing import Any

import httpx2
from sqlalchemy import func, select

from tests.support.api import SignedIn, assert_problem, sign_up
from tests.support.rows import delete_and_erase
from tidings.core.container import Container
from tidings.posts.models import Bookmark

LIST = "/api/v1/me/bookmarks"


async def _ok(client: httpx2.AsyncClient, user: SignedIn, method: str, url: str, **kw: Any) -> Any:
    response = await client.request(method, url, headers=user.headers, **kw)
    assert response.status_code < 300, response.text
    return response.json() if response.content else None


async def _post(client: httpx2.AsyncClient, user: SignedIn, text: str, **extra: Any) -> str:
    made = await _ok(client, user, "POST", "/api/v1/posts", json={"text": text, **extra})
    return str(made["id"])


async def _saved(client: httpx2.AsyncClient, user: SignedIn, **params: Any) -> list[str]:
    page = await _ok(client, user, "GET", LIST, params=params)
    return [post["text"] for post in page["data"]]


async def test_bookmarks_are_saved_listed_and_removed(client: httpx2.AsyncClient) -> None:
    alice = await sign_up(client, "alice")
    bob = await sign_up(client, "bob")
    first = await _post(client, alice, "first")
    second = await _post(client, alice, "second")
    mine = await _post(client, bob, "mine")
    for pid in (second, first, mine):  # the order bob saves them in
        state = await _ok(client, bob, "PUT", f"/api/v1/posts/{pid}/bookmark")
        assert state == {"bookmarked": True}
    assert (await _ok(client, bob, "PUT", f"/api/v1/posts/{first}/bookmark"))["bookmarked"]
    assert await _saved(client, bob) == ["mine", "first", "second"]  # newest bookmark first
    assert await _saved(client, alice) == []  # nobody else's

    page = await _ok(client, bob, "GET", LIST, params={"limit": 2})
    assert [p["text"] for p in page["data"]] == ["mine", "first"]
    rest = await _ok(client, bob, "GET", LIST, params={"limit": 2, "cursor": page["next_cursor"]})
    assert [p["text"] for p in rest["data"]] == ["second"]
    assert rest["next_cursor"] is None

    removed = await client.delete(f"/api/v1/posts/{first}/bookmark", headers=bob.headers)
    assert removed.status_code == 204
    again = await client.delete(f"/api/v1/posts/{first}/bookmark", headers=bob.headers)
    assert again.status_code == 204
    assert await _saved(client, bob) == ["mine", "second"]


async def test_what_the_viewer_cannot_see_is_left_out_yet_removable(
    client: httpx2.AsyncClient,
) -> None:
    alice = await sign_up(client, "alice")
    bob = await sign_up(client, "bob")
    await _ok(client, bob, "PUT", "/api/v1/users/alice/follow")
    friends = await _post(client, alice, "friends only", visibility="followers")
    gone = await _post(client, alice, "to be deleted")
    kept = await _post(client, alice, "kept")
    for pid in (friends, gone, kept):
        await _ok(client, bob, "PUT", f"/api/v1/posts/{pid}/bookmark")
    await _ok(client, bob, "DELETE", "/api/v1/users/alice/follow")
    await _ok(client, alice, "DELETE", f"/api/v1/posts/{gone}")
    assert await _saved(client, bob) == ["kept"]
    # still removable, though no longer seen
    for pid in (friends, gone):
        removed = await client.delete(f"/api/v1/posts/{pid}/bookmark", headers=bob.headers)
        assert removed.status_code == 204, removed.text
    # without a bookmark, what bob cannot see is a 404, as a missing post
    assert_problem(await client.put(f"/api/v1/posts/{friends}/bookmark", headers=bob.headers), 404)
    assert_problem(
        await client.delete(f"/api/v1/posts/{friends}/bookmark", headers=bob.headers), 404
    )
    assert_problem(await client.put("/api/v1/posts/123/bookmark", headers=bob.headers), 404)
    # a block, either way, hides the author's posts
    await _ok(client, alice, "PUT", "/api/v1/users/bob/block")
    assert await _saved(client, bob) == []
    assert_problem(await client.get(LIST), 401)
    assert_problem(await client.put(f"/api/v1/posts/{kept}/bookmark"), 401)


async def test_a_share_bookmarks_the_post_it_shares(client: httpx2.AsyncClient) -> None:
    alice = await sign_up(client, "alice")
    bob = await sign_up(client, "bob")
    carol = await sign_up(client, "carol")
    original = await _post(client, alice, "original")
    shared = await _ok(client, carol, "POST", f"/api/v1/posts/{original}/share")
    share_id = str(shared["share_id"])
    await _ok(client, bob, "PUT", f"/api/v1/posts/{share_id}/bookmark")
    page = await _ok(client, bob, "GET", LIST)
    assert [p["id"] for p in page["data"]] == [original]
    await _ok(client, bob, "DELETE", f"/api/v1/posts/{share_id}/bookmark")
    assert await _saved(client, bob) == []


async def test_the_export_lists_bookmarks_and_erasure_removes_them(
    client: httpx2.AsyncClient, container: Container
) -> None:
    alice = await sign_up(client, "alice")
    bob = await sign_up(client, "bob")
    pid = await _post(client, alice, "worth keeping")
    await _ok(client, bob, "PUT", f"/api/v1/posts/{pid}/bookmark")
    exported = await _ok(client, bob, "GET", "/api/v1/me/export")
    assert [b["post_id"] for b in exported["bookmarks"]] == [pid]

    await delete_and_erase(client, container, bob)
    async with container.db.unit_of_work(write=False) as session:
        left = (await session.execute(select(func.count()).select_from(Bookmark))).scalar()
    assert left == 0


async def test_ones_own_share_does_not_reach_an_original_one_may_no_longer_see(
    client: httpx2.AsyncClient,
) -> None:
    """Carol shared alice's post, then alice blocked carol: carol's own share is still hers,
    but bookmarking or liking through it is a 404, as the original itself is."""
    alice = await sign_up(client, "alice")
    carol = await sign_up(client, "carol")
    original = await _post(client, alice, "original")
    share_id = str(
        (await _ok(client, carol, "POST", f"/api/v1/posts/{original}/share"))["share_id"]
    )
    await _ok(client, alice, "PUT", "/api/v1/users/carol/block")
    for method, action in (("PUT", "bookmark"), ("PUT", "like")):
        for pid in (share_id, original):
            refused = await client.request(
                method, f"/api/v1/posts/{pid}/{action}", headers=carol.headers
            )
            assert_problem(refused, 404)
    assert await _saved(client, carol) == []
