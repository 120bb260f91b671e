"""Domain events land in the outbox with the change they describe: exactly one row of the
expected type per real change, none for a no-op repeat, none for a refused request."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import httpx2
from sqlalchemy import func, select

from tests.support.api import SignedIn, assert_problem, sign_up
from tidings.core.container import Container
from tidings.events.models import OutboxMessage
from tidings.graph.models import Follow
from tidings.posts.models import Like


class Outbox:
    """Reads the rows written since the last call."""

    def __init__(self, container: Container) -> None:
        self.container = container
        self.seen: set[int] = set()

    async def new(self) -> list[OutboxMessage]:
        async with self.container.db.unit_of_work(write=False) as session:
            rows = (
                (await session.execute(select(OutboxMessage).order_by(OutboxMessage.id)))
                .scalars()
                .all()
            )
        fresh = [row for row in rows if row.id not in self.seen]
        self.seen.update(row.id for row in rows)
        return fresh

    async def expect(self, *event_types: str, what: str) -> list[OutboxMessage]:
        fresh = await self.new()
        got = sorted(row.event_type for row in fresh)
        assert got == sorted(event_types), f"{what}: outbox got {got}, expected {event_types}"
        return fresh


async def ok(response: httpx2.Response, *statuses: int) -> Any:
    assert response.status_code in statuses, response.text
    return response.json() if response.content else None


async def test_post_lifecycle_events(client: httpx2.AsyncClient, container: Container) -> None:
    alice = await sign_up(client, "alice")
    bob = await sign_up(client, "bob")
    outbox = Outbox(container)
    await outbox.new()  # whatever sign-up wrote is not under test

    post = await ok(
        await client.post(
            "/api/v1/posts",
            json={"text": "hi @bob #tag", "visibility": "public"},
            headers=alice.headers,
        ),
        201,
    )
    pid = int(post["id"])
    (row,) = await outbox.expect("post.created", what="create")
    assert row.aggregate_id == pid
    assert row.actor_id == int(alice.user_id)
    assert row.payload["post_id"] == str(pid)
    assert row.payload["visibility"] == "public"
    assert row.payload["mentioned_user_ids"] == [bob.user_id]
    assert row.published_at is None or row.published_at >= row.created_at

    await ok(
        await client.patch(f"/api/v1/posts/{pid}", json={"text": "edited"}, headers=alice.headers),
        200,
    )
    (row,) = await outbox.expect("post.updated", what="edit")
    assert row.aggregate_id == pid

    await ok(await client.put(f"/api/v1/posts/{pid}/like", headers=bob.headers), 200)
    (row,) = await outbox.expect("post.liked", what="first like")
    assert row.actor_id == int(bob.user_id)
    assert row.payload["post_author_id"] == alice.user_id
    await ok(await client.put(f"/api/v1/posts/{pid}/like", headers=bob.headers), 200)
    await outbox.expect(what="repeated like")

    await ok(await client.delete(f"/api/v1/posts/{pid}/like", headers=bob.headers), 204)
    await outbox.expect("post.unliked", what="unlike")
    await ok(await client.delete(f"/api/v1/posts/{pid}/like", headers=bob.headers), 204)
    await outbox.expect(what="repeated unlike")

    shared = await ok(await client.post(f"/api/v1/posts/{pid}/share", headers=bob.headers), 201)
    (row,) = await outbox.expect("post.shared", what="share")
    assert row.aggregate_id == pid
    assert row.payload["share_id"] == shared["share_id"]
    await ok(await client.post(f"/api/v1/posts/{pid}/share", headers=bob.headers), 200)
    await outbox.expect(what="repeated share")
    await ok(await client.delete(f"/api/v1/posts/{pid}/share", headers=bob.headers), 204)
    (row,) = await outbox.expect("post.unshared", what="unshare")
    assert row.payload["share_id"] == shared["share_id"]
    await ok(await client.delete(f"/api/v1/posts/{pid}/share", headers=bob.headers), 204)
    await outbox.expect(what="repeated unshare")

    await ok(await client.delete(f"/api/v1/posts/{pid}", headers=alice.headers), 204)
    (row,) = await outbox.expect("post.deleted", what="delete")
    assert row.aggregate_id == pid
    assert row.payload["by_moderator"] is False
    assert_problem(await client.delete(f"/api/v1/posts/{pid}", headers=alice.headers), 404)
    await outbox.expect(what="deleting a deleted post")


async def test_graph_events(client: httpx2.AsyncClient, container: Container) -> None:
    alice = await sign_up(client, "alice")
    bob = await sign_up(client, "bob")
    carol = await sign_up(client, "carol")
    outbox = Outbox(container)
    await outbox.new()

    await ok(await client.put("/api/v1/users/bob/follow", headers=alice.headers), 200)
    (row,) = await outbox.expect("user.followed", what="follow")
    assert (row.actor_id, row.aggregate_id) == (int(alice.user_id), int(bob.user_id))
    assert row.payload == {
        "user_id": alice.user_id,
        "target_user_id": bob.user_id,
        "approved": False,
    }
    await ok(await client.put("/api/v1/users/bob/follow", headers=alice.headers), 200)
    await outbox.expect(what="repeated follow")

    await ok(await client.delete("/api/v1/users/bob/follow", headers=alice.headers), 204)
    await outbox.expect("user.unfollowed", what="unfollow")
    await ok(await client.delete("/api/v1/users/bob/follow", headers=alice.headers), 204)
    await outbox.expect(what="repeated unfollow")

    await ok(await client.put("/api/v1/users/carol/mute", headers=alice.headers), 200)
    (row,) = await outbox.expect("user.muted", what="mute")
    assert row.aggregate_id == int(carol.user_id)
    await ok(await client.put("/api/v1/users/carol/mute", headers=alice.headers), 200)
    await outbox.expect(what="repeated mute")

    await ok(await client.put("/api/v1/users/carol/block", headers=alice.headers), 200)
    (row,) = await outbox.expect("user.blocked", what="block")
    assert (row.actor_id, row.aggregate_id) == (int(alice.user_id), int(carol.user_id))
    await ok(await client.put("/api/v1/users/carol/block", headers=alice.headers), 200)
    await outbox.expect(what="repeated block")


async def test_refused_requests_write_no_events(
    client: httpx2.AsyncClient, container: Container
) -> None:
    alice = await sign_up(client, "alice")
    bob = await sign_up(client, "bob")
    private = await ok(
        await client.post(
            "/api/v1/posts", json={"text": "mine", "visibility": "private"}, headers=alice.headers
        ),
        201,
    )
    public = await ok(
        await client.post("/api/v1/posts", json={"text": "ours"}, headers=alice.headers), 201
    )
    read = await client.get(f"/api/v1/posts/{public['id']}", headers=alice.headers)
    await ok(
        await client.patch(
            f"/api/v1/posts/{public['id']}", json={"text": "v2"}, headers=alice.headers
        ),
        200,
    )
    outbox = Outbox(container)
    await outbox.new()

    refused: list[tuple[str, httpx2.Response, int]] = [
        (
            "text too long",
            await client.post("/api/v1/posts", json={"text": "x" * 5001}, headers=alice.headers),
            422,
        ),
        (
            "unknown field",
            await client.post(
                "/api/v1/posts", json={"text": "x", "mood": "ok"}, headers=alice.headers
            ),
            422,
        ),
        (
            "quote of a private post",
            await client.post(
                "/api/v1/posts",
                json={"text": "x", "quote_post_id": private["id"]},
                headers=alice.headers,
            ),
            422,
        ),
        (
            "like an invisible post",
            await client.put(f"/api/v1/posts/{private['id']}/like", headers=bob.headers),
            404,
        ),
        (
            "share a private post",
            await client.post(f"/api/v1/posts/{private['id']}/share", headers=alice.headers),
            409,
        ),
        (
            "edit someone else's post",
            await client.patch(
                f"/api/v1/posts/{public['id']}", json={"text": "x"}, headers=bob.headers
            ),
            403,
        ),
        (
            "stale If-Match",
            await client.patch(
                f"/api/v1/posts/{public['id']}",
                json={"text": "x"},
                headers={**alice.headers, "If-Match": read.headers["etag"]},
            ),
            412,
        ),
        (
            "delete someone else's post",
            await client.delete(f"/api/v1/posts/{public['id']}", headers=bob.headers),
            403,
        ),
        (
            "follow yourself",
            await client.put("/api/v1/users/alice/follow", headers=alice.headers),
            422,
        ),
        (
            "anonymous like",
            await client.put(f"/api/v1/posts/{public['id']}/like"),
            401,
        ),
    ]
    for what, response, status in refused:
        assert response.status_code == status, (what, response.text)
    await outbox.expect(what="refused requests")

    # A block, then a follow across it: the follow is refused and emits nothing.
    await ok(await client.put("/api/v1/users/bob/block", headers=alice.headers), 200)
    await outbox.expect("user.blocked", what="block")
    assert_problem(await client.put("/api/v1/users/bob/follow", headers=alice.headers), 409)
    assert_problem(await client.put("/api/v1/users/alice/follow", headers=bob.headers), 404)
    await outbox.expect(what="follows across a block")


async def event_count(container: Container, event_type: str, aggregate_id: int) -> int:
    stmt = (
        select(func.count())
        .select_from(OutboxMessage)
        .where(OutboxMessage.event_type == event_type, OutboxMessage.aggregate_id == aggregate_id)
    )
    async with container.db.unit_of_work(write=False) as session:
        return int((await session.execute(stmt)).scalar_one())


async def test_events_match_changes_under_concurrency(
    client: httpx2.AsyncClient, container: Container
) -> None:
    """Concurrent toggles: liked - unliked events == like rows, followed - unfollowed == follow
    rows. An event without its change (or a change without its event) breaks the equality."""
    author = await sign_up(client, "author")
    users: list[SignedIn] = [await sign_up(client, f"fan{i:02d}") for i in range(8)]
    post = await ok(
        await client.post("/api/v1/posts", json={"text": "hot"}, headers=author.headers), 201
    )
    pid = int(post["id"])
    rng = random.Random(7)
    calls = []
    for user in users:
        for k in range(6):
            like = (k + rng.randrange(2)) % 2 == 0
            calls.append(
                client.request(
                    "PUT" if like else "DELETE", f"/api/v1/posts/{pid}/like", headers=user.headers
                )
            )
            follow = rng.random() < 0.5
            calls.append(
                client.request(
                    "PUT" if follow else "DELETE",
                    "/api/v1/users/author/follow",
                    headers=user.headers,
                )
            )
    rng.shuffle(calls)
    responses = await asyncio.gather(*calls)
    for response in responses:
        assert response.status_code < 300 or response.status_code in (409, 503), response.text

    async with container.db.unit_of_work(write=False) as session:
        likes = (
            await session.execute(select(func.count()).select_from(Like).where(Like.post_id == pid))
        ).scalar_one()
        follows = (
            await session.execute(
                select(func.count())
                .select_from(Follow)
                .where(Follow.followee_id == int(author.user_id))
            )
        ).scalar_one()
    liked = await event_count(container, "post.liked", pid)
    unliked = await event_count(container, "post.unliked", pid)
    followed = await event_count(container, "user.followed", int(author.user_id))
    unfollowed = await event_count(container, "user.unfollowed", int(author.user_id))
    assert liked - unliked == likes, (liked, unliked, likes)
    assert followed - unfollowed == follows, (followed, unfollowed, follows)
    assert liked >= likes
    assert followed >= follows
