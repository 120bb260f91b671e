"""``Idempotency-Key`` on ``POST /api/v1/posts``: replays, mismatches, per-user scope, expiry,
and 50 concurrent identical requests creating exactly one post."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import httpx2
import pytest
from sqlalchemy import func, select, update

from tests.support.api import SignedIn, assert_problem, sign_up
from tidings.core.container import Container
from tidings.core.db import utcnow
from tidings.events.models import IdempotencyRecord, OutboxMessage
from tidings.posts.models import Post

BODY = {"text": "hello #idempotent world", "visibility": "public"}


async def post_count(container: Container, author: SignedIn | None = None) -> int:
    stmt = select(func.count()).select_from(Post)
    if author is not None:
        stmt = stmt.where(Post.author_id == int(author.user_id))
    async with container.db.unit_of_work(write=False) as session:
        return int((await session.execute(stmt)).scalar_one())


async def created_events(container: Container) -> int:
    stmt = (
        select(func.count())
        .select_from(OutboxMessage)
        .where(OutboxMessage.event_type == "post.created")
    )
    async with container.db.unit_of_work(write=False) as session:
        return int((await session.execute(stmt)).scalar_one())


async def create(
    client: httpx2.AsyncClient, user: SignedIn, key: str | None, body: Any = None
) -> httpx2.Response:
    headers = dict(user.headers)
    if key is not None:
        headers["Idempotency-Key"] = key
    return await client.post("/api/v1/posts", json=BODY if body is None else body, headers=headers)


async def test_retry_with_same_key_and_body_replays_and_creates_nothing(
    client: httpx2.AsyncClient, container: Container
) -> None:
    alice = await sign_up(client, "alice")
    first = await create(client, alice, "key-1")
    assert first.status_code == 201, first.text
    assert "idempotent-replayed" not in first.headers
    assert await post_count(container, alice) == 1
    assert await created_events(container) == 1

    for _ in range(3):
        retry = await create(client, alice, "key-1")
        assert retry.status_code == 201, retry.text
        assert retry.headers.get("idempotent-replayed") == "true"
        assert retry.json() == first.json()
        assert retry.json()["id"] == first.json()["id"]
    assert await post_count(container, alice) == 1
    assert await created_events(container) == 1

    # The same JSON with keys in another order and other whitespace is the same request.
    reordered = await client.post(
        "/api/v1/posts",
        content=b'{ "visibility": "public",\n "text": "hello #idempotent world" }',
        headers={**alice.headers, "Idempotency-Key": "key-1", "content-type": "application/json"},
    )
    assert reordered.status_code == 201, reordered.text
    assert reordered.json()["id"] == first.json()["id"]
    assert await post_count(container, alice) == 1

    # No key: every request is a new post; a new key: a new post.
    assert (await create(client, alice, None)).json()["id"] != first.json()["id"]
    assert (await create(client, alice, "key-2")).json()["id"] != first.json()["id"]
    assert await post_count(container, alice) == 3


async def test_same_key_with_a_different_body_is_422_and_creates_nothing(
    client: httpx2.AsyncClient, container: Container
) -> None:
    alice = await sign_up(client, "alice")
    first = await create(client, alice, "reused")
    assert first.status_code == 201, first.text
    for other in ({"text": "something else"}, {**BODY, "visibility": "private"}):
        mismatch = await create(client, alice, "reused", other)
        assert_problem(mismatch, 422)
        assert "idempotent-replayed" not in mismatch.headers
    assert await post_count(container, alice) == 1
    assert await created_events(container) == 1
    # The original is still replayed afterwards.
    again = await create(client, alice, "reused")
    assert again.json()["id"] == first.json()["id"]


async def test_keys_are_scoped_per_user(client: httpx2.AsyncClient, container: Container) -> None:
    alice = await sign_up(client, "alice")
    bob = await sign_up(client, "bob")
    mine = await create(client, alice, "shared-key")
    theirs = await create(client, bob, "shared-key")
    assert mine.status_code == theirs.status_code == 201, (mine.text, theirs.text)
    assert "idempotent-replayed" not in theirs.headers
    assert mine.json()["id"] != theirs.json()["id"]
    assert theirs.json()["author"]["username"] == "bob"
    assert await post_count(container, alice) == 1
    assert await post_count(container, bob) == 1
    # ... and a different body under the same key is fine for the other user too.
    carol = await sign_up(client, "carol")
    assert (await create(client, carol, "shared-key", {"text": "mine"})).status_code == 201


async def test_fifty_concurrent_identical_posts_with_one_key_create_one_post(
    client: httpx2.AsyncClient, container: Container
) -> None:
    alice = await sign_up(client, "alice")
    responses = await asyncio.gather(
        *(create(client, alice, "burst-key") for _ in range(50)), return_exceptions=True
    )
    errors = [r for r in responses if isinstance(r, BaseException)]
    assert not errors, errors
    statuses = [r.status_code for r in responses if isinstance(r, httpx2.Response)]
    assert statuses == [201] * 50, statuses
    ids = {r.json()["id"] for r in responses if isinstance(r, httpx2.Response)}
    assert len(ids) == 1, ids
    replayed = [
        r
        for r in responses
        if isinstance(r, httpx2.Response) and r.headers.get("idempotent-replayed")
    ]
    assert len(replayed) == 49
    assert await post_count(container, alice) == 1
    assert await created_events(container) == 1
    profile = (await client.get("/api/v1/users/alice")).json()
    assert profile["post_count"] == 1


@pytest.mark.parametrize("key", ["k" * 256, "k" * 1000])
async def test_overlong_key_is_a_problem_and_creates_nothing(
    client: httpx2.AsyncClient, container: Container, key: str
) -> None:
    alice = await sign_up(client, "alice")
    response = await create(client, alice, key)
    assert 400 <= response.status_code < 500, response.text
    assert_problem(response, response.status_code)
    assert await post_count(container) == 0


async def test_key_of_exactly_255_characters_is_accepted(
    client: httpx2.AsyncClient, container: Container
) -> None:
    alice = await sign_up(client, "alice")
    key = "k" * 255
    first = await create(client, alice, key)
    assert first.status_code == 201, first.text
    retry = await create(client, alice, key)
    assert retry.headers.get("idempotent-replayed") == "true"
    assert retry.json()["id"] == first.json()["id"]
    assert await post_count(container) == 1


async def test_keys_older_than_24_hours_are_forgotten(
    client: httpx2.AsyncClient, container: Container
) -> None:
    alice = await sign_up(client, "alice")
    first = await create(client, alice, "old-key")
    assert first.status_code == 201

    # 23 hours old: still replayed.
    await age_key(container, alice, "old-key", timedelta(hours=23))
    recent = await create(client, alice, "old-key")
    assert recent.headers.get("idempotent-replayed") == "true"
    assert recent.json()["id"] == first.json()["id"]
    assert await post_count(container, alice) == 1

    # 25 hours old: forgotten, the same request creates a new post, and that one is replayed.
    await age_key(container, alice, "old-key", timedelta(hours=25))
    fresh = await create(client, alice, "old-key")
    assert fresh.status_code == 201, fresh.text
    assert "idempotent-replayed" not in fresh.headers
    assert fresh.json()["id"] != first.json()["id"]
    assert await post_count(container, alice) == 2
    replay = await create(client, alice, "old-key")
    assert replay.headers.get("idempotent-replayed") == "true"
    assert replay.json()["id"] == fresh.json()["id"]
    assert await post_count(container, alice) == 2


async def age_key(container: Container, user: SignedIn, key: str, age: timedelta) -> None:
    async with container.db.unit_of_work() as session:
        result = await session.execute(
            update(IdempotencyRecord)
            .where(IdempotencyRecord.user_id == int(user.user_id), IdempotencyRecord.key == key)
            .values(created_at=utcnow() - age)
        )
        assert result.rowcount == 1  # type: ignore[attr-defined]


async def test_a_failed_create_does_not_burn_the_key(
    client: httpx2.AsyncClient, container: Container
) -> None:
    """A request the service refuses stores no response: the key is free for a valid retry."""
    alice = await sign_up(client, "alice")
    refused = await create(client, alice, "retry-me", {"text": "q", "quote_post_id": "12345"})
    assert_problem(refused, 422)
    assert await post_count(container) == 0
    async with container.db.unit_of_work(write=False) as session:
        stored = (
            await session.execute(select(func.count()).select_from(IdempotencyRecord))
        ).scalar_one()
    assert stored == 0
    ok = await create(client, alice, "retry-me")
    assert ok.status_code == 201, ok.text
    assert "idempotent-replayed" not in ok.headers
    assert await post_count(container) == 1


async def test_replay_carries_the_first_responses_location_and_etag(
    client: httpx2.AsyncClient,
) -> None:
    alice = await sign_up(client, "alice")
    first = await create(client, alice, "headers-key")
    assert first.status_code == 201
    assert first.headers["location"] == f"/api/v1/posts/{first.json()['id']}"
    retry = await create(client, alice, "headers-key")
    assert retry.headers.get("idempotent-replayed") == "true"
    assert retry.headers.get("location") == first.headers["location"]
    assert retry.headers.get("etag") == first.headers["etag"]


async def test_concurrent_patches_with_one_if_match_let_exactly_one_through(
    client: httpx2.AsyncClient, container: Container
) -> None:
    """Optimistic locking under contention: ten edits sent at once with the same ETag; exactly
    one applies, the rest are 412 (or a retryable 409/503), and the version moved by one."""
    alice = await sign_up(client, "alice")
    created = await create(client, alice, None)
    pid = created.json()["id"]
    etag = created.headers["etag"]
    responses = await asyncio.gather(
        *(
            client.patch(
                f"/api/v1/posts/{pid}",
                json={"text": f"edit {i}"},
                headers={**alice.headers, "If-Match": etag},
            )
            for i in range(10)
        )
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses.count(200) == 1, statuses
    assert set(statuses) <= {200, 409, 412, 503}, statuses
    winner = next(r for r in responses if r.status_code == 200)
    current = await client.get(f"/api/v1/posts/{pid}")
    assert current.json()["version"] == 2
    assert current.json()["text"] == winner.json()["text"]
    async with container.db.unit_of_work(write=False) as session:
        updated = (
            await session.execute(
                select(func.count())
                .select_from(OutboxMessage)
                .where(
                    OutboxMessage.event_type == "post.updated",
                    OutboxMessage.aggregate_id == int(pid),
                )
            )
        ).scalar_one()
    assert updated == 1
    # The new ETag works; the old one keeps failing.
    fresh = await client.patch(
        f"/api/v1/posts/{pid}",
        json={"text": "third"},
        headers={**alice.headers, "If-Match": current.headers["etag"]},
    )
    assert fresh.status_code == 200, fresh.text
    assert fresh.json()["version"] == 3
    assert_problem(
        await client.patch(
            f"/api/v1/posts/{pid}",
            json={"text": "stale"},
            headers={**alice.headers, "If-Match": etag},
        ),
        412,
    )
