"""Timelines over HTTP: the home feed, a user's posts and a hashtag, on SQLite and PostgreSQL.

Every test asserts exact ids in order, so the same dataset gives the same answer on both backends
(the feed is a LATERAL merge on PostgreSQL and an ``IN`` query on SQLite).
"""

from __future__ import annotations

import base64
from typing import Any

import httpx2

from tests.support.api import SignedIn, assert_problem, login, make_admin, sign_up
from tidings.core.container import Container

Json = dict[str, Any]
MEDIA = [{"url": "https://img.example/a.png", "type": "image", "alt_text": "a"}]


# --- helpers -----------------------------------------------------------------------------------


async def _post(
    client: httpx2.AsyncClient, user: SignedIn, text: str = "a post", **extra: Any
) -> str:
    response = await client.post(
        "/api/v1/posts", json={"text": text, **extra}, headers=user.headers
    )
    assert response.status_code == 201, response.text
    post_id: str = response.json()["id"]
    return post_id


async def _share(client: httpx2.AsyncClient, user: SignedIn, post_id: str) -> str:
    response = await client.post(f"/api/v1/posts/{post_id}/share", headers=user.headers)
    assert response.status_code == 201, response.text
    share_id: str = response.json()["share_id"]
    return share_id


async def _ok(
    client: httpx2.AsyncClient, method: str, path: str, user: SignedIn, **kwargs: Any
) -> None:
    response = await client.request(method, path, headers=user.headers, **kwargs)
    assert response.status_code in (200, 204), response.text


async def _page(
    client: httpx2.AsyncClient, path: str, user: SignedIn | None = None, **params: Any
) -> Json:
    response = await client.get(path, params=params, headers=user.headers if user else None)
    assert response.status_code == 200, response.text
    body: Json = response.json()
    assert set(body) == {"data", "next_cursor"}
    return body


async def _ids(
    client: httpx2.AsyncClient, path: str, user: SignedIn | None = None, **params: Any
) -> list[str]:
    body = await _page(client, path, user, **params)
    return [item["id"] for item in body["data"]]


async def _feed(client: httpx2.AsyncClient, user: SignedIn, **params: Any) -> list[str]:
    return await _ids(client, "/api/v1/feed", user, **params)


async def _timeline(
    client: httpx2.AsyncClient, username: str, user: SignedIn | None = None, **params: Any
) -> list[str]:
    return await _ids(client, f"/api/v1/users/{username}/posts", user, **params)


async def _walk(
    client: httpx2.AsyncClient, path: str, user: SignedIn | None, limit: int
) -> list[list[str]]:
    """Every page, following the ``Link: <...>; rel="next"`` header to the end."""
    headers = user.headers if user else None
    url: str | None = f"{path}?limit={limit}"
    pages: list[list[str]] = []
    while url is not None:
        response = await client.get(url, headers=headers)
        assert response.status_code == 200, response.text
        body = response.json()
        pages.append([item["id"] for item in body["data"]])
        link = response.headers.get("link")
        if body["next_cursor"] is None:
            assert link is None
            url = None
        else:
            assert link is not None
            assert link.endswith('>; rel="next"'), link
            url = link[1 : link.index(">")]
            assert f"cursor={body['next_cursor']}" in url
        assert len(pages) < 100, "the walk does not end"
    return pages


async def _admin(client: httpx2.AsyncClient, container: Container) -> SignedIn:
    await make_admin(container, "boss")
    return await login(client, "boss")


# --- the home feed -----------------------------------------------------------------------------


async def test_feed_follows_mutes_and_blocks(client: httpx2.AsyncClient) -> None:
    alice = await sign_up(client, "alice")
    bob = await sign_up(client, "bob")
    carol = await sign_up(client, "carol")
    a1 = await _post(client, alice, "alice one")
    b1 = await _post(client, bob, "bob one")
    c1 = await _post(client, carol, "carol one")

    assert await _feed(client, alice) == [a1]  # only herself until she follows someone
    await _ok(client, "PUT", "/api/v1/users/bob/follow", alice)
    assert await _feed(client, alice) == [b1, a1]
    await _ok(client, "PUT", "/api/v1/users/carol/follow", alice)
    assert await _feed(client, alice) == [c1, b1, a1]

    bs = await _share(client, bob, c1)  # bob shares carol's post
    feed = (await _page(client, "/api/v1/feed", alice))["data"]
    assert [item["id"] for item in feed] == [bs, c1, b1, a1]
    assert feed[0]["kind"] == "share"
    assert feed[0]["author"]["username"] == "bob"
    assert feed[0]["shared_post"]["id"] == c1
    assert feed[0]["shared_post"]["author"]["username"] == "carol"
    assert feed[1]["kind"] == "post"
    assert feed[1]["shared_post"] is None

    # A mute hides carol and shares of her posts from alice's feed, and nothing else.
    await _ok(client, "PUT", "/api/v1/users/carol/mute", alice)
    assert await _feed(client, alice) == [b1, a1]
    assert await _timeline(client, "carol", alice) == [c1]
    assert await _timeline(client, "bob", alice) == [bs, b1]
    await _ok(client, "DELETE", "/api/v1/users/carol/mute", alice)
    assert await _feed(client, alice) == [bs, c1, b1, a1]

    # carol blocks alice: her posts, the follow, and bob's share of her post all go.
    await _ok(client, "PUT", "/api/v1/users/alice/block", carol)
    assert await _feed(client, alice) == [b1, a1]
    assert_problem(await client.get("/api/v1/users/carol/posts", headers=alice.headers), 404)
    assert await _timeline(client, "bob", alice) == [b1]
    assert await _timeline(client, "bob") == [bs, b1]
    await _ok(client, "DELETE", "/api/v1/users/alice/block", carol)
    assert await _feed(client, alice) == [bs, b1, a1]  # the follow is gone; bob's share is back
    await _ok(client, "PUT", "/api/v1/users/carol/follow", alice)
    assert await _feed(client, alice) == [bs, c1, b1, a1]

    # alice blocks bob: his posts and shares leave her feed and his timeline is empty to her.
    await _ok(client, "PUT", "/api/v1/users/bob/block", alice)
    assert await _feed(client, alice) == [c1, a1]
    assert await _timeline(client, "bob", alice) == []
    assert await _feed(client, bob) == [bs, b1]  # and alice's posts are gone from bob's side
    await _ok(client, "DELETE", "/api/v1/users/bob/block", alice)

    await _ok(client, "DELETE", "/api/v1/users/carol/follow", alice)
    assert await _feed(client, alice) == [a1]


async def test_feed_hides_suspended_authors(
    client: httpx2.AsyncClient, container: Container
) -> None:
    boss = await _admin(client, container)
    alice = await sign_up(client, "alice")
    bob = await sign_up(client, "bob")
    a1 = await _post(client, alice, "alice #topic")
    b1 = await _post(client, bob, "bob")
    bs = await _share(client, bob, a1)
    await _ok(client, "PUT", "/api/v1/users/alice/follow", bob)
    assert await _feed(client, bob) == [bs, b1, a1]
    assert await _ids(client, "/api/v1/tags/topic/posts") == [a1]

    await _ok(client, "PATCH", "/api/v1/admin/users/alice", boss, json={"suspended": True})
    assert await _feed(client, bob) == [b1]  # her posts and shares of them are gone
    assert await _timeline(client, "bob") == [b1]
    assert await _ids(client, "/api/v1/tags/topic/posts") == []
    assert_problem(await client.get("/api/v1/users/alice/posts"), 404)
    assert await _timeline(client, "alice", boss) == [a1]  # moderators still see the account

    await _ok(client, "PATCH", "/api/v1/admin/users/alice", boss, json={"suspended": False})
    assert await _feed(client, bob) == [bs, b1, a1]


# --- visibility --------------------------------------------------------------------------------


async def test_visibility_on_feed_and_user_timelines(
    client: httpx2.AsyncClient, container: Container
) -> None:
    boss = await _admin(client, container)
    alice = await sign_up(client, "alice")
    bob = await sign_up(client, "bob")
    carol = await sign_up(client, "carol")
    await _ok(client, "PUT", "/api/v1/users/bob/follow", alice)
    pub = await _post(client, bob, "for everyone")
    fol = await _post(client, bob, "for followers", visibility="followers")
    prv = await _post(client, bob, "for me", visibility="private")

    assert await _timeline(client, "bob") == [pub]  # anonymous
    assert await _timeline(client, "bob", carol) == [pub]  # not a follower
    assert await _timeline(client, "bob", alice) == [fol, pub]  # a follower
    assert await _timeline(client, "bob", bob) == [prv, fol, pub]  # the author
    assert await _timeline(client, "bob", boss) == [prv, fol, pub]  # a moderator

    assert await _feed(client, alice) == [fol, pub]
    assert await _feed(client, bob) == [prv, fol, pub]
    assert await _feed(client, carol) == []
    await _ok(client, "PUT", "/api/v1/users/bob/follow", carol)
    assert await _feed(client, carol) == [fol, pub]
    assert await _timeline(client, "bob", carol) == [fol, pub]

    await _ok(client, "PATCH", f"/api/v1/posts/{fol}", bob, json={"visibility": "private"})
    assert await _feed(client, alice) == [pub]
    assert await _timeline(client, "bob", alice) == [pub]
    assert await _timeline(client, "bob", bob) == [prv, fol, pub]


async def test_shares_follow_the_visibility_of_the_shared_post(client: httpx2.AsyncClient) -> None:
    alice = await sign_up(client, "alice")
    bob = await sign_up(client, "bob")
    carol = await sign_up(client, "carol")
    p = await _post(client, bob, "worth sharing")
    s = await _share(client, alice, p)
    await _ok(client, "PUT", "/api/v1/users/alice/follow", carol)
    assert await _feed(client, carol) == [s]

    # bob narrows his post to followers: carol (not his follower) no longer sees alice's share.
    await _ok(client, "PATCH", f"/api/v1/posts/{p}", bob, json={"visibility": "followers"})
    assert await _feed(client, carol) == []
    assert await _timeline(client, "alice", carol) == []
    assert await _timeline(client, "alice") == []
    assert await _timeline(client, "alice", alice) == []  # nor alice: she does not follow bob

    await _ok(client, "PUT", "/api/v1/users/bob/follow", carol)
    assert await _feed(client, carol) == [s, p]
    assert await _timeline(client, "alice", carol) == [s]
    assert await _timeline(client, "alice") == []


async def test_shares_and_filters(client: httpx2.AsyncClient) -> None:
    alice = await sign_up(client, "alice")
    bob = await sign_up(client, "bob")
    carol = await sign_up(client, "carol")
    await _ok(client, "PUT", "/api/v1/users/bob/follow", carol)
    m = await _post(client, alice, "a picture", media=MEDIA)
    t = await _post(client, alice, "just words")
    sm = await _share(client, bob, m)
    st = await _share(client, bob, t)
    bm = await _post(client, bob, "my picture", media=MEDIA)
    b2 = await _post(client, bob, "my words")

    timeline = (await _page(client, "/api/v1/users/bob/posts"))["data"]
    assert [item["id"] for item in timeline] == [b2, bm, st, sm]
    assert [item["kind"] for item in timeline] == ["post", "post", "share", "share"]
    assert timeline[3]["shared_post"]["id"] == m
    assert timeline[3]["shared_post"]["author"]["username"] == "alice"
    assert timeline[3]["shared_post"]["media"][0]["url"] == MEDIA[0]["url"]
    assert timeline[2]["shared_post"]["id"] == t

    feed = (await _page(client, "/api/v1/feed", carol))["data"]
    assert [item["id"] for item in feed] == [b2, bm, st, sm]
    assert feed[3]["kind"] == "share"
    assert feed[3]["shared_post"]["id"] == m
    assert feed[3]["counts"]["shares"] == 1  # counts are the shared post's

    for path, user in (("/api/v1/users/bob/posts", None), ("/api/v1/feed", carol)):
        assert await _ids(client, path, user, include_shares="false") == [b2, bm]
        assert await _ids(client, path, user, include_shares="true") == [b2, bm, st, sm]
        assert await _ids(client, path, user, has_media="true") == [bm, sm]
        assert await _ids(client, path, user, has_media="false") == [b2, st]
        assert await _ids(client, path, user, include_shares="false", has_media="true") == [bm]

    assert await _ids(client, "/api/v1/tags/x/posts", has_media="true") == []
    assert_problem(await client.get("/api/v1/feed?has_media=maybe", headers=carol.headers), 422)
    assert_problem(await client.get("/api/v1/users/bob/posts?include_shares=2"), 422)

    await _ok(client, "DELETE", f"/api/v1/posts/{t}/share", bob)  # undoing a share removes it
    assert await _feed(client, carol) == [b2, bm, sm]


# --- pagination and deletion -------------------------------------------------------------------


async def test_pagination_walks_every_page_without_gaps(client: httpx2.AsyncClient) -> None:
    users = [await sign_up(client, name) for name in ("alice", "bob", "carol", "dave")]
    alice, bob, carol, dave = users
    for other in ("alice", "bob", "carol"):
        await _ok(client, "PUT", f"/api/v1/users/{other}/follow", dave)

    created: list[tuple[str, str]] = []  # (id, author) in creation order
    for i in range(24):
        author = users[i % 4] if i % 5 else users[(i // 5) % 3]  # uneven, interleaved
        created.append((await _post(client, author, f"post {i} #Walk"), author.username))
    hidden = await _post(client, bob, "bob only #walk", visibility="private")
    shared = await _share(client, carol, created[3][0])
    created.append((shared, "carol"))
    gone = await _post(client, alice, "soon deleted #walk")
    await _ok(client, "DELETE", f"/api/v1/posts/{gone}", alice)
    created.append((await _post(client, dave, "dave, private #walk", visibility="private"), "dave"))
    created.append((await _post(client, alice, "last #walk"), "alice"))

    expected = [pid for pid, _ in reversed(created)]
    assert hidden not in expected
    assert len(expected) == 27
    for limit in (10, 3, 1):
        pages = await _walk(client, "/api/v1/feed", dave, limit)
        flat = [pid for page in pages for pid in page]
        assert flat == expected, f"limit={limit}"
        assert all(len(page) == limit for page in pages[:-1])
        assert len(pages) == -(-len(expected) // limit)

    alice_expected = [pid for pid, who in reversed(created) if who == "alice"]
    pages = await _walk(client, "/api/v1/users/alice/posts", None, 2)
    assert [pid for page in pages for pid in page] == alice_expected

    public_tagged = [created[-1][0]] + [pid for pid, _ in reversed(created[:24])]
    pages = await _walk(client, "/api/v1/tags/walk/posts", None, 10)
    assert [pid for page in pages for pid in page] == public_tagged
    assert [len(page) for page in pages] == [10, 10, 5]


async def test_feed_merge_keeps_every_post_of_bursty_authors(client: httpx2.AsyncClient) -> None:
    """Authors posting in bursts, walked with page sizes around the number of authors: every
    post comes back once, in order (the k-way merge on PostgreSQL must not stop early)."""
    alice = await sign_up(client, "alice")
    bob = await sign_up(client, "bob")
    carol = await sign_up(client, "carol")
    dave = await sign_up(client, "dave")
    for name in ("alice", "bob", "carol"):
        await _ok(client, "PUT", f"/api/v1/users/{name}/follow", dave)
    bursts = [(alice, 3), (bob, 1), (carol, 2), (alice, 1), (bob, 3), (carol, 1), (alice, 2)]
    created = [await _post(client, who, "burst") for who, count in bursts for _ in range(count)]
    expected = list(reversed(created))
    for limit in (1, 2, 3, 4, 5, 13, 14):
        pages = await _walk(client, "/api/v1/feed", dave, limit)
        assert [pid for page in pages for pid in page] == expected, f"limit={limit}"


async def test_deleted_posts_never_appear(client: httpx2.AsyncClient) -> None:
    alice = await sign_up(client, "alice")
    bob = await sign_up(client, "bob")
    await _ok(client, "PUT", "/api/v1/users/alice/follow", bob)
    keep = await _post(client, alice, "keep #gone")
    drop = await _post(client, alice, "drop #gone")
    share = await _share(client, bob, drop)
    assert await _feed(client, bob) == [share, drop, keep]

    await _ok(client, "DELETE", f"/api/v1/posts/{drop}", alice)
    assert await _feed(client, bob) == [keep]
    assert await _feed(client, alice) == [keep]
    assert await _timeline(client, "alice", alice) == [keep]
    assert await _timeline(client, "bob") == []
    assert await _ids(client, "/api/v1/tags/gone/posts") == [keep]


# --- hashtags ----------------------------------------------------------------------------------


async def test_tag_timeline(client: httpx2.AsyncClient) -> None:
    alice = await sign_up(client, "alice")
    bob = await sign_up(client, "bob")
    carol = await sign_up(client, "carol")
    await _ok(client, "PUT", "/api/v1/users/alice/follow", bob)
    p1 = await _post(client, alice, "#Python rocks")
    await _post(client, alice, "#python for followers", visibility="followers")
    await _post(client, alice, "#PYTHON private", visibility="private")
    await _post(client, alice, "#pythonista is another tag")
    p5 = await _post(client, bob, "a #pyThon picture", media=MEDIA)
    s = await _share(client, carol, p1)

    for viewer in (None, alice, bob, carol):
        assert await _ids(client, "/api/v1/tags/PyThOn/posts", viewer) == [p5, p1]
    tagged = (await _page(client, "/api/v1/tags/python/posts"))["data"]
    assert all("python" in item["hashtags"] for item in tagged)
    assert s not in [item["id"] for item in tagged]  # shares are not tagged posts
    assert await _ids(client, "/api/v1/tags/python/posts", has_media="true") == [p5]
    assert await _ids(client, "/api/v1/tags/python/posts", has_media="false") == [p1]
    assert await _ids(client, "/api/v1/tags/nothing_here/posts") == []
    assert await _ids(client, "/api/v1/tags/2026/posts") == []  # digits only: never a tag

    await _ok(client, "PUT", "/api/v1/users/carol/block", bob)  # blocks hide both ways
    assert await _ids(client, "/api/v1/tags/python/posts", carol) == [p1]
    assert await _ids(client, "/api/v1/tags/python/posts", bob) == [p5, p1]

    assert_problem(await client.get("/api/v1/tags/bad-tag/posts"), 422)
    assert_problem(await client.get(f"/api/v1/tags/{'a' * 101}/posts"), 422)
    assert (await client.get(f"/api/v1/tags/{'a' * 100}/posts")).status_code == 200


# --- bad input ---------------------------------------------------------------------------------


BAD_CURSORS = [
    "garbage!!",
    "bm90IGpzb24",  # "not json"
    base64.urlsafe_b64encode(b'{"v":1,"id":"7"}').decode().rstrip("="),
    base64.urlsafe_b64encode(b'{"v":2,"id":7}').decode().rstrip("="),
]


async def test_bad_cursor_and_limit(client: httpx2.AsyncClient) -> None:
    alice = await sign_up(client, "alice")
    for path in ("/api/v1/feed", "/api/v1/users/alice/posts", "/api/v1/tags/x/posts"):
        for cursor in BAD_CURSORS:
            bad = await client.get(path, params={"cursor": cursor}, headers=alice.headers)
            assert_problem(bad, 400)
        assert_problem(await client.get(path, params={"limit": 101}, headers=alice.headers), 422)
        assert_problem(await client.get(path, params={"limit": 0}, headers=alice.headers), 422)
        assert (await client.get(path, params={"limit": 100}, headers=alice.headers)).is_success


async def test_feed_needs_sign_in_and_unknown_users_are_404(client: httpx2.AsyncClient) -> None:
    assert_problem(await client.get("/api/v1/feed"), 401)
    assert_problem(await client.get("/api/v1/users/nobody/posts"), 404)
    assert_problem(await client.get("/api/v1/feed", headers={"Authorization": "Bearer x"}), 401)
