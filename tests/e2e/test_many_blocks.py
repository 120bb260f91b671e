"""A viewer who blocks more accounts than a statement can take parameters (asyncpg and SQLite
stop at about 32,767) still gets every list — followers, likes, comments, found accounts —
with the blocked accounts hidden, never a 500. On SQLite and PostgreSQL."""

from __future__ import annotations

import httpx2
from sqlalchemy import insert

from tests.support.api import sign_up
from tidings.accounts.models import User
from tidings.core.container import Container
from tidings.graph.models import Block

MANY = 40_000
FIRST_ID = 9_000_000_000  # ids no sign-up takes


async def test_lists_hide_blocked_accounts_past_parameter_limits(
    client: httpx2.AsyncClient, container: Container
) -> None:
    vic = await sign_up(client, "vic")
    bea = await sign_up(client, "bea")
    cyd = await sign_up(client, "cyd")
    dan = await sign_up(client, "dan")
    users = [
        {"id": FIRST_ID + n, "username": f"z{n}", "username_key": f"z{n}", "email": f"z{n}@e.org"}
        for n in range(MANY)
    ]
    blocks = [  # vic blocks most of them, and the last thousand block vic
        {"id": FIRST_ID + n, "blocker_id": int(vic.user_id), "blocked_id": FIRST_ID + n}
        if n < MANY - 1000
        else {"id": FIRST_ID + n, "blocker_id": FIRST_ID + n, "blocked_id": int(vic.user_id)}
        for n in range(MANY)
    ]
    async with container.db.unit_of_work() as session:
        await session.execute(insert(User), users)
        await session.execute(insert(Block), blocks)
    assert (await client.put("/api/v1/users/bea/block", headers=vic.headers)).status_code == 200

    for who in (bea, dan):
        followed = await client.put("/api/v1/users/cyd/follow", headers=who.headers)
        assert followed.status_code == 200, followed.text
    post = await client.post("/api/v1/posts", json={"text": "hello"}, headers=cyd.headers)
    post_id = post.json()["id"]
    for who in (bea, dan):
        liked = await client.put(f"/api/v1/posts/{post_id}/like", headers=who.headers)
        assert liked.status_code == 200, liked.text
        said = await client.post(
            f"/api/v1/posts/{post_id}/comments", json={"text": "hi"}, headers=who.headers
        )
        assert said.status_code == 201, said.text

    async def names(url: str, key: str = "username") -> list[str]:
        answer = await client.get(url, headers=vic.headers)
        assert answer.status_code == 200, answer.text
        return [
            item[key] if key == "username" else item["author"]["username"]
            for item in answer.json()["data"]
        ]

    assert await names("/api/v1/users/cyd/followers") == ["dan"]
    assert await names(f"/api/v1/posts/{post_id}/likes") == ["dan"]
    assert await names(f"/api/v1/posts/{post_id}/comments", key="author") == ["dan"]
    assert await names("/api/v1/users?prefix=bea") == []
    assert await names("/api/v1/users?prefix=z1234") == []  # blocked by the tens of thousands
    assert await names(f"/api/v1/users?prefix=z{MANY - 1}") == []  # blocks vic
    followed = await client.put("/api/v1/users/bea/follow", headers=dan.headers)
    assert followed.status_code == 200, followed.text
    assert await names("/api/v1/users/dan/following") == ["cyd"]  # not bea
    comments = (await client.get(f"/api/v1/posts/{post_id}/comments", headers=dan.headers)).json()
    parent = next(c["id"] for c in comments["data"] if c["author"]["username"] == "dan")
    for who in (bea, dan):
        replied = await client.post(
            f"/api/v1/posts/{post_id}/comments",
            json={"text": "re", "parent_comment_id": parent},
            headers=who.headers,
        )
        assert replied.status_code == 201, replied.text
    assert await names(f"/api/v1/comments/{parent}/replies", key="author") == ["dan"]

    # someone else sees them all
    listed = await client.get("/api/v1/users/cyd/followers", headers=dan.headers)
    assert sorted(u["username"] for u in listed.json()["data"]) == ["bea", "dan"]
