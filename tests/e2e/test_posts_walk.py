"""A walk through posts, likes, shares and the graph with two and three users."""

from __future__ import annotations

import httpx2

from tests.support.api import assert_problem, sign_up


async def test_post_like_share_follow_walk(client: httpx2.AsyncClient) -> None:
    alice = await sign_up(client, "alice")
    bob = await sign_up(client, "bob")

    created = await client.post(
        "/api/v1/posts",
        json={
            "text": "Hello #World from @bob see https://example.com/x.",
            "media": [{"url": "https://img.example/a.png", "type": "image", "alt_text": "a"}],
        },
        headers=alice.headers,
    )
    assert created.status_code == 201, created.text
    post = created.json()
    assert post["hashtags"] == ["world"]
    assert post["mentions"] == ["bob"]
    assert post["links"] == ["https://example.com/x"]
    assert post["author"]["username"] == "alice"
    assert post["counts"] == {"likes": 0, "shares": 0, "comments": 0, "quotes": 0}
    assert post["viewer"] == {"liked": False, "shared": False}
    assert created.headers["etag"]
    pid = post["id"]

    read = await client.get(f"/api/v1/posts/{pid}")
    assert read.status_code == 200
    assert read.json()["viewer"] is None
    again = await client.get(
        f"/api/v1/posts/{pid}", headers={"If-None-Match": read.headers["etag"]}
    )
    assert again.status_code == 304

    liked = await client.put(f"/api/v1/posts/{pid}/like", headers=bob.headers)
    assert liked.json() == {"liked": True, "likes": 1}
    liked = await client.put(f"/api/v1/posts/{pid}/like", headers=bob.headers)
    assert liked.json() == {"liked": True, "likes": 1}
    likers = (await client.get(f"/api/v1/posts/{pid}/likes")).json()
    assert [u["username"] for u in likers["data"]] == ["bob"]

    shared = await client.post(f"/api/v1/posts/{pid}/share", headers=bob.headers)
    assert shared.status_code == 201, shared.text
    assert (await client.post(f"/api/v1/posts/{pid}/share", headers=bob.headers)).status_code == 200
    view = (await client.get(f"/api/v1/posts/{pid}", headers=bob.headers)).json()
    assert view["counts"]["likes"] == 1
    assert view["counts"]["shares"] == 1
    assert view["viewer"] == {"liked": True, "shared": True}

    stale = read.headers["etag"]
    edited = await client.patch(
        f"/api/v1/posts/{pid}",
        json={"text": "edited #new"},
        headers={**alice.headers, "If-Match": stale},
    )
    assert edited.status_code == 200, edited.text
    assert edited.json()["version"] == 2
    assert edited.json()["edited_at"] is not None
    conflict = await client.patch(
        f"/api/v1/posts/{pid}", json={"text": "again"}, headers={**alice.headers, "If-Match": stale}
    )
    assert_problem(conflict, 412)
    assert_problem(
        await client.patch(f"/api/v1/posts/{pid}", json={"text": "mine"}, headers=bob.headers), 403
    )

    followed = await client.put("/api/v1/users/alice/follow", headers=bob.headers)
    assert followed.status_code == 200
    assert followed.json()["following"] is True
    profile = (await client.get("/api/v1/users/alice")).json()
    assert profile["follower_count"] == 1
    assert profile["post_count"] == 1
    followers = (await client.get("/api/v1/users/alice/followers")).json()
    assert [u["username"] for u in followers["data"]] == ["bob"]

    assert_problem(await client.put("/api/v1/users/bob/follow", headers=bob.headers), 422)
    blocked = await client.put("/api/v1/users/bob/block", headers=alice.headers)
    assert blocked.json()["blocking"] is True
    assert (await client.get("/api/v1/users/alice")).json()["follower_count"] == 0
    assert_problem(await client.get(f"/api/v1/posts/{pid}", headers=bob.headers), 404)
    assert_problem(await client.put(f"/api/v1/posts/{pid}/like", headers=bob.headers), 404)
    assert_problem(await client.put("/api/v1/users/alice/follow", headers=bob.headers), 404)

    deleted = await client.delete(f"/api/v1/posts/{pid}", headers=alice.headers)
    assert deleted.status_code == 204
    assert_problem(await client.get(f"/api/v1/posts/{pid}"), 404)
    assert (await client.get("/api/v1/users/alice")).json()["post_count"] == 0
