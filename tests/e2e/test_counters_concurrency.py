"""Denormalised counters stay equal to ``COUNT(*)`` of their rows under concurrent toggling.

Each test fires 100 requests at once (``asyncio.gather``) in a seeded random order: every
response must be a 2xx or a retryable 409/503 problem, never a 500. Afterwards the counters
(as stored and as served by the API) must equal the number of rows, and a final sequential
pass that puts every pair into a known state must land on exactly the expected numbers.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import Any

import httpx2
import pytest
from sqlalchemy import func, select

from tests.support.api import SignedIn, sign_up
from tidings.accounts.models import User
from tidings.core.container import Container
from tidings.graph import repository as graph_repository
from tidings.graph.models import Follow
from tidings.graph.repository import GraphRepository
from tidings.posts.models import Like, Post

SEED = 20260101
TOGGLES_PER_ACTOR = 5
RETRYABLE = (409, 503)

Op = tuple[str, Callable[[], Awaitable[httpx2.Response]]]


async def sign_up_all(client: httpx2.AsyncClient, names: list[str]) -> list[SignedIn]:
    return [await sign_up(client, name) for name in names]


def toggles(rng: random.Random, first: str, second: str) -> list[str]:
    """TOGGLES_PER_ACTOR alternating actions starting with a random one of the two."""
    start = rng.randrange(2)
    return [(first, second)[(start + i) % 2] for i in range(TOGGLES_PER_ACTOR)]


async def fire(ops: list[Op]) -> list[str]:
    """Run every op at once; return a description of each response that is not acceptable."""
    results = await asyncio.gather(*(call() for _, call in ops), return_exceptions=True)
    bad: list[str] = []
    for (label, _), result in zip(ops, results, strict=True):
        if isinstance(result, BaseException):
            bad.append(f"{label}: raised {type(result).__name__}: {result}")
            continue
        status = result.status_code
        if 200 <= status < 300:
            continue
        problem_json = result.headers.get("content-type", "").startswith("application/problem+json")
        if status in RETRYABLE and problem_json:
            continue
        bad.append(f"{label}: {status} {result.text[:300]}")
    return bad


async def scalar(container: Container, stmt: Any) -> Any:
    async with container.db.unit_of_work(write=False) as session:
        return (await session.execute(stmt)).scalar_one()


async def test_concurrent_like_toggles_keep_like_count_equal_to_rows(
    client: httpx2.AsyncClient, container: Container
) -> None:
    author = await sign_up(client, "author")
    users = await sign_up_all(client, [f"liker{i:02d}" for i in range(20)])
    created = await client.post("/api/v1/posts", json={"text": "like me"}, headers=author.headers)
    assert created.status_code == 201, created.text
    pid = created.json()["id"]
    path = f"/api/v1/posts/{pid}/like"

    rng = random.Random(SEED)
    ops: list[Op] = []
    for user in users:
        for action in toggles(rng, "like", "unlike"):
            method = "PUT" if action == "like" else "DELETE"

            def call(m: str = method, h: dict[str, str] = user.headers) -> Any:
                return client.request(m, path, headers=h)

            ops.append((f"{user.username} {action}", call))
    rng.shuffle(ops)
    assert len(ops) == 100

    bad = await fire(ops)
    assert not bad, "unacceptable responses:\n" + "\n".join(bad)

    await assert_likes_consistent(client, container, pid, author)

    # Settle every user into a known state, sequentially: even-numbered users like it.
    for i, user in enumerate(users):
        if i % 2 == 0:
            response = await client.put(path, headers=user.headers)
            assert response.status_code == 200, response.text
        else:
            response = await client.delete(path, headers=user.headers)
            assert response.status_code == 204, response.text
    likes = await assert_likes_consistent(client, container, pid, author)
    assert likes == 10


async def assert_likes_consistent(
    client: httpx2.AsyncClient, container: Container, pid: str, viewer: SignedIn
) -> int:
    rows = await scalar(
        container, select(func.count()).select_from(Like).where(Like.post_id == int(pid))
    )
    stored = await scalar(container, select(Post.like_count).where(Post.id == int(pid)))
    served = (await client.get(f"/api/v1/posts/{pid}", headers=viewer.headers)).json()
    assert stored == rows, f"posts.like_count={stored} but {rows} like rows"
    assert served["counts"]["likes"] == rows, (served["counts"], rows)
    likers = await client.get(f"/api/v1/posts/{pid}/likes", params={"limit": 100})
    assert likers.status_code == 200, likers.text
    assert len(likers.json()["data"]) == rows
    assert 0 <= rows <= 20
    return int(rows)


async def test_concurrent_follow_toggles_keep_user_counts_equal_to_rows(
    client: httpx2.AsyncClient, container: Container
) -> None:
    names = [f"member{i:02d}" for i in range(10)]
    users = await sign_up_all(client, names)
    by_name = {u.username: u for u in users}

    # Ten directed edges as five mutual pairs (A->B and B->A toggled at the same time), plus ten
    # edges into a "celebrity" (member00) and out of it, so counters on one row are contended.
    edges: list[tuple[str, str]] = []
    for i in range(0, 10, 2):
        edges += [(names[i], names[i + 1]), (names[i + 1], names[i])]
    for i in range(2, 7):
        edges.append((names[i], names[0]))
    for i in range(5, 10):
        edges.append((names[0], names[i]))
    assert len(edges) == len(set(edges)) == 20

    rng = random.Random(SEED + 1)
    ops: list[Op] = []
    for follower, followee in edges:
        headers = by_name[follower].headers
        path = f"/api/v1/users/{followee}/follow"
        for action in toggles(rng, "follow", "unfollow"):
            method = "PUT" if action == "follow" else "DELETE"

            def call(m: str = method, p: str = path, h: dict[str, str] = headers) -> Any:
                return client.request(m, p, headers=h)

            ops.append((f"{follower} {action} {followee}", call))
    rng.shuffle(ops)
    assert len(ops) == 100

    bad = await fire(ops)
    assert not bad, "unacceptable responses:\n" + "\n".join(bad)
    await assert_follow_counts_consistent(client, container, names)

    # Known final state: the even-indexed edges are followed, the odd ones not.
    for index, (follower, followee) in enumerate(edges):
        method = "PUT" if index % 2 == 0 else "DELETE"
        response = await client.request(
            method, f"/api/v1/users/{followee}/follow", headers=by_name[follower].headers
        )
        assert response.status_code in (200, 204), response.text
    counts = await assert_follow_counts_consistent(client, container, names)
    wanted = {name: [0, 0] for name in names}  # [followers, following]
    for follower, followee in edges[::2]:
        wanted[followee][0] += 1
        wanted[follower][1] += 1
    assert counts == {name: tuple(pair) for name, pair in wanted.items()}


async def assert_follow_counts_consistent(
    client: httpx2.AsyncClient, container: Container, names: list[str]
) -> dict[str, tuple[int, int]]:
    async with container.db.unit_of_work(write=False) as session:
        users = (await session.execute(select(User).where(User.username.in_(names)))).scalars()
        stored = {u.username: (u.id, u.follower_count, u.following_count) for u in users}
        mismatches = []
        result = {}
        for name, (uid, followers, following) in sorted(stored.items()):
            follower_rows = (
                await session.execute(
                    select(func.count()).select_from(Follow).where(Follow.followee_id == uid)
                )
            ).scalar_one()
            following_rows = (
                await session.execute(
                    select(func.count()).select_from(Follow).where(Follow.follower_id == uid)
                )
            ).scalar_one()
            if (followers, following) != (follower_rows, following_rows):
                mismatches.append(
                    f"{name}: stored followers={followers} following={following}, rows "
                    f"followers={follower_rows} following={following_rows}"
                )
            result[name] = (follower_rows, following_rows)
    assert len(stored) == len(names)
    assert not mismatches, "counters drifted from COUNT(*):\n" + "\n".join(mismatches)
    for name, (followers, following) in result.items():
        profile = (await client.get(f"/api/v1/users/{name}")).json()
        assert (profile["follower_count"], profile["following_count"]) == (
            followers,
            following,
        ), (name, profile)
    return result


async def test_concurrent_share_toggles_keep_share_count_equal_to_rows(
    client: httpx2.AsyncClient, container: Container
) -> None:
    author = await sign_up(client, "author")
    users = await sign_up_all(client, [f"sharer{i:02d}" for i in range(20)])
    created = await client.post("/api/v1/posts", json={"text": "share me"}, headers=author.headers)
    assert created.status_code == 201, created.text
    pid = created.json()["id"]
    path = f"/api/v1/posts/{pid}/share"

    rng = random.Random(SEED + 2)
    ops: list[Op] = []
    for user in users:
        for action in toggles(rng, "share", "unshare"):
            method = "POST" if action == "share" else "DELETE"

            def call(m: str = method, h: dict[str, str] = user.headers) -> Any:
                return client.request(m, path, headers=h)

            ops.append((f"{user.username} {action}", call))
    rng.shuffle(ops)
    assert len(ops) == 100

    bad = await fire(ops)
    assert not bad, "unacceptable responses:\n" + "\n".join(bad)
    await assert_shares_consistent(client, container, pid, author)

    for i, user in enumerate(users):
        if i % 4 == 0:
            response = await client.post(path, headers=user.headers)
            assert response.status_code in (200, 201), response.text
        else:
            response = await client.delete(path, headers=user.headers)
            assert response.status_code == 204, response.text
    assert await assert_shares_consistent(client, container, pid, author) == 5


async def assert_shares_consistent(
    client: httpx2.AsyncClient, container: Container, pid: str, viewer: SignedIn
) -> int:
    rows = await scalar(
        container,
        select(func.count())
        .select_from(Post)
        .where(Post.share_of_id == int(pid), Post.kind == "share"),
    )
    stored = await scalar(container, select(Post.share_count).where(Post.id == int(pid)))
    served = (await client.get(f"/api/v1/posts/{pid}", headers=viewer.headers)).json()
    assert stored == rows, f"posts.share_count={stored} but {rows} share rows"
    assert served["counts"]["shares"] == rows, (served["counts"], rows)
    assert 0 <= rows <= 20
    return int(rows)


async def test_concurrent_follow_and_block_leave_no_follow_across_a_block(
    client: httpx2.AsyncClient, container: Container, backend: str, request: Any
) -> None:
    """B follows A while A blocks B, for 15 pairs at once. Whatever order they commit in, a
    block must end with no follow either way between the two (and counters equal to rows)."""
    pairs = 15
    blockers = await sign_up_all(client, [f"blocker{i:02d}" for i in range(pairs)])
    fans = await sign_up_all(client, [f"fan{i:02d}" for i in range(pairs)])
    ops: list[Op] = []
    for blocker, fan in zip(blockers, fans, strict=True):

        def follow(b: SignedIn = blocker, f: SignedIn = fan) -> Any:
            return client.put(f"/api/v1/users/{b.username}/follow", headers=f.headers)

        def block(b: SignedIn = blocker, f: SignedIn = fan) -> Any:
            return client.put(f"/api/v1/users/{f.username}/block", headers=b.headers)

        ops += [(f"{fan.username} follows {blocker.username}", follow)]
        ops += [(f"{blocker.username} blocks {fan.username}", block)]
    results = await asyncio.gather(*(call() for _, call in ops), return_exceptions=True)
    bad = []
    for (label, _), result in zip(ops, results, strict=True):
        if isinstance(result, BaseException):
            bad.append(f"{label}: raised {result!r}")
        elif result.status_code not in (200, 404, 409, 503):
            # 404/409: the follow arrived after the block, which hides/forbids it.
            bad.append(f"{label}: {result.status_code} {result.text[:200]}")
    assert not bad, "\n".join(bad)

    names = [u.username for u in blockers + fans]
    await assert_follow_counts_consistent(client, container, names)
    async with container.db.unit_of_work(write=False) as session:
        follows = (await session.execute(select(Follow.follower_id, Follow.followee_id))).all()
    across = [
        (fan.username, blocker.username)
        for blocker, fan in zip(blockers, fans, strict=True)
        if (int(fan.user_id), int(blocker.user_id)) in set(follows)
    ]
    assert not across, f"follows that survived a block: {across}"


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)  # SQLite: no pair locks
async def test_a_follow_that_waits_too_long_for_its_pair_is_a_retryable_409(
    client: httpx2.AsyncClient, container: Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another transaction (a notification consumer, say) holds the pair's lock: the follow
    gives up after the lock timeout with a retryable problem, writes nothing, and succeeds
    once the lock is free."""
    monkeypatch.setattr(graph_repository, "PAIR_LOCK_TIMEOUT_MS", 200)
    alice, bob = await sign_up_all(client, ["alice", "bob"])
    path = "/api/v1/users/bob/follow"
    async with container.db.unit_of_work() as session:
        await GraphRepository(session).lock_pairs(int(alice.user_id), [int(bob.user_id)])
        busy = await asyncio.wait_for(client.put(path, headers=alice.headers), timeout=30)
    assert busy.status_code == 409, busy.text
    assert busy.headers["content-type"].startswith("application/problem+json")
    assert busy.headers["retry-after"] == "1"
    assert await scalar(container, select(func.count()).select_from(Follow)) == 0
    assert (await client.put(path, headers=alice.headers)).status_code == 200
    assert await scalar(container, select(func.count()).select_from(Follow)) == 1


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)  # SQLite: no pair locks
async def test_several_pair_locks_taken_in_one_statement_hold_each_pair(
    client: httpx2.AsyncClient, container: Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A notice for several recipients locks every pair with its actor (one statement):
    a follow of any of them waits and gives up; a pair not in the set is free."""
    monkeypatch.setattr(graph_repository, "PAIR_LOCK_TIMEOUT_MS", 200)
    users = await sign_up_all(client, ["alice", "bob", "carol", "dave", "erin"])
    alice, others, free = users[0], users[1:4], users[4]
    async with container.db.unit_of_work() as session:
        await GraphRepository(session).lock_pairs(
            int(alice.user_id), [int(u.user_id) for u in reversed(others)]
        )
        for user in others:
            busy = await asyncio.wait_for(
                client.put(f"/api/v1/users/{user.username}/follow", headers=alice.headers),
                timeout=30,
            )
            assert busy.status_code == 409, (user.username, busy.text)
        done = await client.put(f"/api/v1/users/{free.username}/follow", headers=alice.headers)
        assert done.status_code == 200, done.text
    assert await scalar(container, select(func.count()).select_from(Follow)) == 1
