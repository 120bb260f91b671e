"""Locked accounts and follow requests through the HTTP API, on SQLite and PostgreSQL: a follow
of a locked account waits for its answer; approving makes it a follow (followers-only posts
then show), declining or withdrawing removes it; blocks remove requests either way; the locked
account hears of requests; the export lists them."""

from __future__ import annotations

from typing import Any

import httpx2
from sqlalchemy import func, select

from tests.support.api import (
    SignedIn,
    assert_problem,
    login,
    make_admin,
    sign_up,
)
from tests.support.rows import delete_and_erase
from tests.support.waiting import eventually
from tidings.core.container import Container
from tidings.graph.models import FollowRequest

Json = dict[str, Any]
REQUESTS = "/api/v1/me/follow-requests"


async def _ok(client: httpx2.AsyncClient, user: SignedIn, method: str, url: str, **kw: Any) -> Any:
    response = await client.request(method, url, headers=user.headers, **kw)
    assert response.status_code < 300, response.text
    return response.json() if response.content else None


async def _lock(client: httpx2.AsyncClient, user: SignedIn, locked: bool = True) -> Json:
    account: Json = await _ok(client, user, "PATCH", "/api/v1/me", json={"locked": locked})
    return account


async def _follow(client: httpx2.AsyncClient, user: SignedIn, other: SignedIn) -> Json:
    state: Json = await _ok(client, user, "PUT", f"/api/v1/users/{other.username}/follow")
    return state


async def _waiting(client: httpx2.AsyncClient, user: SignedIn) -> list[str]:
    page = await _ok(client, user, "GET", REQUESTS)
    return [item["username"] for item in page["data"]]


async def _followers(client: httpx2.AsyncClient, user: SignedIn) -> list[str]:
    page = await _ok(client, user, "GET", f"/api/v1/users/{user.username}/followers")
    return [item["username"] for item in page["data"]]


async def test_a_locked_account_approves_its_followers(client: httpx2.AsyncClient) -> None:
    alice = await sign_up(client, "alice")
    bob = await sign_up(client, "bob")
    account = await _lock(client, alice)
    assert account["locked"] is True
    profile = await _ok(client, bob, "GET", "/api/v1/users/alice")
    assert profile["locked"] is True
    hidden = await _ok(
        client, alice, "POST", "/api/v1/posts", json={"text": "friends", "visibility": "followers"}
    )

    state = await _follow(client, bob, alice)
    assert (state["following"], state["requested"]) == (False, True)
    assert (await _follow(client, bob, alice))["requested"] is True  # idempotent
    assert await _followers(client, alice) == []
    assert await _waiting(client, alice) == ["bob"]
    waiting = (await _ok(client, alice, "GET", REQUESTS))["data"][0]
    assert waiting["id"] == bob.user_id
    assert waiting["since"]
    post_url = f"/api/v1/posts/{hidden['id']}"
    assert_problem(await client.get(post_url, headers=bob.headers), 404)

    approved = await _ok(client, alice, "POST", f"{REQUESTS}/bob/approve")
    assert approved["followed_by"] is True
    state = await _ok(client, bob, "PUT", "/api/v1/users/alice/follow")
    assert (state["following"], state["requested"]) == (True, False)
    assert await _followers(client, alice) == ["bob"]
    assert (await _ok(client, alice, "GET", "/api/v1/me"))["follower_count"] == 1
    assert await _waiting(client, alice) == []
    assert (await client.get(post_url, headers=bob.headers)).status_code == 200
    again = await _ok(client, alice, "POST", f"{REQUESTS}/bob/approve")  # a retry: the same
    assert again["followed_by"] is True


async def test_declining_withdrawing_and_blocking_remove_requests(
    client: httpx2.AsyncClient,
) -> None:
    alice = await sign_up(client, "alice")
    carol = await sign_up(client, "carol")
    dave = await sign_up(client, "dave")
    erin = await sign_up(client, "erin")
    await _lock(client, alice)
    await _lock(client, erin)
    for user in (carol, dave, erin):
        assert (await _follow(client, user, alice))["requested"] is True
    assert (await _follow(client, alice, erin))["requested"] is True  # and the other way
    assert sorted(await _waiting(client, alice)) == ["carol", "dave", "erin"]

    assert (await client.delete(f"{REQUESTS}/carol", headers=alice.headers)).status_code == 204
    assert (await client.delete(f"{REQUESTS}/carol", headers=alice.headers)).status_code == 204
    await _ok(client, dave, "DELETE", "/api/v1/users/alice/follow")  # withdrawn
    await _ok(client, alice, "PUT", "/api/v1/users/erin/block")  # both ways gone
    assert await _waiting(client, alice) == []
    assert await _waiting(client, erin) == []
    state = await _ok(client, carol, "PUT", "/api/v1/users/alice/follow")
    assert state["requested"] is True  # declined: may ask again
    assert await _followers(client, alice) == []


async def test_unlocking_keeps_requests_and_a_follow_then_needs_none(
    client: httpx2.AsyncClient,
) -> None:
    alice = await sign_up(client, "alice")
    frank = await sign_up(client, "frank")
    await _lock(client, alice)
    await _follow(client, frank, alice)
    assert (await _lock(client, alice, locked=False))["locked"] is False
    assert await _waiting(client, alice) == ["frank"]  # still to answer
    state = await _follow(client, frank, alice)  # unlocked: a follow at once
    assert (state["following"], state["requested"]) == (True, False)
    assert await _waiting(client, alice) == []


async def test_bad_answers(client: httpx2.AsyncClient) -> None:
    alice = await sign_up(client, "alice")
    bob = await sign_up(client, "bob")
    bad = await client.patch("/api/v1/me", json={"locked": "yes"}, headers=alice.headers)
    assert_problem(bad, 422)
    assert_problem(await client.post(f"{REQUESTS}/bob/approve", headers=alice.headers), 404)
    assert_problem(await client.post(f"{REQUESTS}/nobody_here/approve", headers=alice.headers), 404)
    assert_problem(await client.post(f"{REQUESTS}/alice/approve", headers=alice.headers), 422)
    assert_problem(await client.get(REQUESTS), 401)
    assert_problem(await client.post(f"{REQUESTS}/bob/approve"), 401)
    # nobody answers someone else's requests: bob has none from alice to him
    await _lock(client, bob)
    assert (await _follow(client, alice, bob))["requested"] is True
    assert_problem(await client.post(f"{REQUESTS}/bob/approve", headers=alice.headers), 404)
    assert await _waiting(client, bob) == ["alice"]


async def test_the_locked_account_is_told_and_the_export_lists_requests(
    client: httpx2.AsyncClient,
) -> None:
    alice = await sign_up(client, "alice")
    bob = await sign_up(client, "bob")
    await _lock(client, alice)
    await _follow(client, bob, alice)

    async def told() -> bool:
        page = await _ok(
            client, alice, "GET", "/api/v1/notifications", params={"kinds": "follow_request"}
        )
        return [item["summary"] for item in page["data"]] == ["bob asked to follow you"]

    await eventually(told)
    sent = await _ok(client, bob, "GET", "/api/v1/me/export")
    received = await _ok(client, alice, "GET", "/api/v1/me/export")
    assert [r["username"] for r in sent["follow_requests_sent"]] == ["alice"]
    assert [r["username"] for r in received["follow_requests_received"]] == ["bob"]
    assert sent["follow_requests_received"] == received["follow_requests_sent"] == []


async def test_erasing_an_account_removes_its_requests_either_way(
    client: httpx2.AsyncClient, container: Container
) -> None:
    alice = await sign_up(client, "alice")
    bob = await sign_up(client, "bob")
    carol = await sign_up(client, "carol")
    await _lock(client, alice)
    await _lock(client, carol)
    await _follow(client, bob, alice)
    await _follow(client, alice, carol)
    await delete_and_erase(client, container, alice)
    async with container.db.unit_of_work(write=False) as session:
        left = (await session.execute(select(func.count()).select_from(FollowRequest))).scalar()
    assert left == 0
    assert await _waiting(client, carol) == []


async def test_approving_tells_nobody_it_followed_and_suspended_requesters_wait(
    client: httpx2.AsyncClient, container: Container
) -> None:
    """The approver is not told "bob followed you" for a follow it just allowed, the requester
    is told it was accepted; a request from an account suspended since cannot be approved
    (404) but can be declined."""
    alice = await sign_up(client, "alice")
    bob = await sign_up(client, "bob")
    mallory = await sign_up(client, "mallory")
    await _lock(client, alice)
    await _follow(client, bob, alice)
    await _follow(client, mallory, alice)
    await _ok(client, alice, "POST", f"{REQUESTS}/bob/approve")

    async def settled() -> bool:  # the follow request notices are there, and nothing else
        page = await _ok(client, alice, "GET", "/api/v1/notifications")
        return [n["kind"] for n in page["data"]] == ["follow_request"]

    await eventually(settled)

    async def bob_told() -> bool:  # the requester hears of it from the account
        page = await _ok(client, bob, "GET", "/api/v1/notifications")
        return [(n["kind"], n["summary"]) for n in page["data"]] == [
            ("follow_accepted", "alice accepted your follow request")
        ]

    await eventually(bob_told)
    await make_admin(container, "boss")
    boss = await login(client, "boss")
    await _ok(client, boss, "PATCH", "/api/v1/admin/users/mallory", json={"suspended": True})
    refused = await client.post(f"{REQUESTS}/mallory/approve", headers=alice.headers)
    assert_problem(refused, 404)
    declined = await client.delete(f"{REQUESTS}/mallory", headers=alice.headers)
    assert declined.status_code == 204, declined.text
    async with container.db.unit_of_work(write=False) as session:
        left = (await session.execute(select(func.count()).select_from(FollowRequest))).scalar()
    assert left == 0
    assert await _followers(client, alice) == ["bob"]
