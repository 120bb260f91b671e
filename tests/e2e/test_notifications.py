"""Notifications through the HTTP API, fed by the embedded broker and relay of the app itself:
every kind, grouping, unread counts, marking read, filters, pagination, and who is never
notified (yourself, blocked and muted users)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx2
from sqlalchemy import event, func, select

from tests.support.api import SignedIn, assert_problem, sign_up
from tests.support.events import applied
from tests.support.waiting import eventually
from tidings.core.container import Container
from tidings.events.models import ProcessedEvent
from tidings.notifications import service as notifications
from tidings.notifications.consumers import BUILDERS, CONSUMER, FORGET

Json = dict[str, Any]
URL = "/api/v1/notifications"


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


async def _comment(
    client: httpx2.AsyncClient, user: SignedIn, post_id: str, text: str, parent: str | None = None
) -> str:
    body: Json = {"text": text}
    if parent is not None:
        body["parent_comment_id"] = parent
    response = await client.post(
        f"/api/v1/posts/{post_id}/comments", json=body, headers=user.headers
    )
    assert response.status_code == 201, response.text
    comment_id: str = response.json()["id"]
    return comment_id


async def _do(client: httpx2.AsyncClient, method: str, path: str, user: SignedIn) -> None:
    response = await client.request(method, path, headers=user.headers)
    assert response.status_code in (200, 201, 204), response.text


async def _like(client: httpx2.AsyncClient, user: SignedIn, post_id: str) -> None:
    await _do(client, "PUT", f"/api/v1/posts/{post_id}/like", user)


async def _unlike(client: httpx2.AsyncClient, user: SignedIn, post_id: str) -> None:
    await _do(client, "DELETE", f"/api/v1/posts/{post_id}/like", user)


async def _graph(client: httpx2.AsyncClient, user: SignedIn, action: str, other: SignedIn) -> None:
    await _do(client, "PUT", f"/api/v1/users/{other.username}/{action}", user)


async def _list(client: httpx2.AsyncClient, user: SignedIn, **params: Any) -> Json:
    response = await client.get(URL, params=params, headers=user.headers)
    assert response.status_code == 200, response.text
    data: Json = response.json()
    return data


async def _items(client: httpx2.AsyncClient, user: SignedIn, **params: Any) -> list[Json]:
    items: list[Json] = (await _list(client, user, limit=100, **params))["data"]
    return items


async def _unread(client: httpx2.AsyncClient, user: SignedIn) -> int:
    response = await client.get(f"{URL}/unread-count", headers=user.headers)
    assert response.status_code == 200, response.text
    count: int = response.json()["count"]
    return count


async def _wait_for(
    client: httpx2.AsyncClient, user: SignedIn, count: int, within: float = 10.0, **params: Any
) -> list[Json]:
    """Wait until the user has exactly ``count`` notifications (matching ``params``)."""
    seen: list[Json] = []

    async def arrived() -> bool:
        nonlocal seen
        seen = await _items(client, user, **params)
        return len(seen) == count

    await eventually(arrived, within=within)
    return seen


async def _settled(container: Container) -> None:
    """Wait until the notifications consumer has applied every event it takes (so that the
    absence of a notification means it was never produced, not that it is late)."""
    await applied(container, CONSUMER, [*BUILDERS, FORGET])


def _by_kind(items: list[Json]) -> dict[str, Json]:
    return {item["kind"]: item for item in items}


# --- acceptance: the embedded default -----------------------------------------------------------


async def test_a_like_produces_a_notification_within_a_second(
    client: httpx2.AsyncClient, container: Container, backend: str
) -> None:
    alice = await sign_up(client, "alice")
    bob = await sign_up(client, "bob")
    post_id = await _post(client, alice)

    assert container.events is not None
    consumers = len(container.events.registry.for_event("post.created"))

    async def idle() -> bool:  # the post's own event is fully handled: time the like alone
        async with container.db.unit_of_work(write=False) as session:
            done = await session.execute(select(func.count()).select_from(ProcessedEvent))
            return int(done.scalar_one()) >= consumers

    await eventually(idle, within=10)
    await _like(client, bob, post_id)
    # The acceptance bound is for the embedded default (SQLite); the PostgreSQL run of the same
    # path gets slack for a loaded machine — speed is measured by the benchmark, not here.
    [item] = await _wait_for(client, alice, 1, within=1.0 if backend == "sqlite" else 5.0)
    assert item["kind"] == "like"
    assert item["post_id"] == post_id
    assert item["comment_id"] is None
    assert item["actor_count"] == 1
    assert item["actors"] == [
        {"id": bob.user_id, "username": "bob", "display_name": "bob", "avatar_url": None}
    ]
    assert item["summary"] == "bob liked your post"
    assert item["read"] is False
    assert item["created_at"].endswith("Z")
    assert item["updated_at"].endswith("Z")
    assert await _unread(client, alice) == 1
    assert await _items(client, bob) == []


# --- every kind --------------------------------------------------------------------------------


async def test_each_kind_is_produced_once_per_person_and_event(
    client: httpx2.AsyncClient, container: Container
) -> None:
    alice = await sign_up(client, "alice")
    bob = await sign_up(client, "bob")
    carol = await sign_up(client, "carol")
    post_id = await _post(client, alice, "hello")

    await _do(client, "POST", f"/api/v1/posts/{post_id}/share", bob)
    await _graph(client, bob, "follow", alice)
    comment_id = await _comment(client, bob, post_id, "nice one")
    quote_id = await _post(client, bob, "look at this", quote_post_id=post_id)
    mention_post = await _post(client, bob, "hey @alice and @carol")
    # carol replies to alice's own comment on alice's post, mentioning her: one reply, no more
    alice_comment = await _comment(client, alice, post_id, "thanks all")
    reply_id = await _comment(client, carol, post_id, "@alice welcome", parent=alice_comment)
    # carol comments on bob's quote mentioning alice, who may see it: a mention in a comment
    mention_comment = await _comment(client, carol, quote_id, "cc @alice")

    items = await _wait_for(client, alice, 7)
    await _settled(container)
    items = await _items(client, alice)
    assert sorted(i["kind"] for i in items) == [
        "comment",
        "follow",
        "mention",
        "mention",
        "quote",
        "reply",
        "share",
    ]
    expected = {
        ("share", "bob shared your post", post_id, None),
        ("follow", "bob followed you", None, None),
        ("comment", "bob commented on your post", post_id, comment_id),
        ("quote", "bob quoted your post", quote_id, None),
        ("mention", "bob mentioned you in a post", mention_post, None),
        ("reply", "carol replied to your comment", post_id, reply_id),
        ("mention", "carol mentioned you in a comment", quote_id, mention_comment),
    }
    got = {(i["kind"], i["summary"], i["post_id"], i["comment_id"]) for i in items}
    assert got == expected
    assert all(i["actor_count"] == 1 and len(i["actors"]) == 1 for i in items)

    # carol was mentioned by bob; bob heard about carol's comment on his quote
    assert [i["summary"] for i in await _items(client, carol)] == ["bob mentioned you in a post"]
    assert {i["kind"] for i in await _items(client, bob)} == {"comment"}


async def test_mentions_do_not_reveal_posts_the_person_cannot_see(
    client: httpx2.AsyncClient, container: Container
) -> None:
    alice = await sign_up(client, "alice")
    bob = await sign_up(client, "bob")
    await _post(client, bob, "private note about @alice", visibility="private")
    await _post(client, bob, "followers only, @alice", visibility="followers")
    await _settled(container)
    assert await _items(client, alice) == []

    await _graph(client, alice, "follow", bob)
    followers_post = await _post(client, bob, "again @alice", visibility="followers")
    [item] = await _wait_for(client, alice, 1)
    assert (item["kind"], item["post_id"]) == ("mention", followers_post)


# --- grouping ----------------------------------------------------------------------------------


async def test_likes_on_a_post_group_into_one_item_with_the_latest_actors_first(
    client: httpx2.AsyncClient,
) -> None:
    alice = await sign_up(client, "alice")
    post_id = await _post(client, alice)
    fans = [await sign_up(client, name) for name in ("bob", "carol", "dave", "erin")]

    for n, fan in enumerate(fans[:3], start=1):
        await _like(client, fan, post_id)

        async def counted(n: int = n) -> bool:
            items = await _items(client, alice)
            return len(items) == 1 and items[0]["actor_count"] == n

        await eventually(counted)

    [item] = await _items(client, alice)
    assert item["actor_count"] == 3
    assert [a["username"] for a in item["actors"]] == ["dave", "carol", "bob"]
    assert item["summary"] == "dave and 2 others liked your post"
    assert await _unread(client, alice) == 1

    await _like(client, fans[3], post_id)
    await eventually(lambda: _actor_count(client, alice, 4))
    [item] = await _items(client, alice)
    assert [a["username"] for a in item["actors"]] == ["erin", "dave", "carol"]  # at most 3
    assert item["summary"] == "erin and 3 others liked your post"


async def _actor_count(client: httpx2.AsyncClient, user: SignedIn, count: int) -> bool:
    items = await _items(client, user)
    return len(items) == 1 and items[0]["actor_count"] == count


async def test_liking_again_does_not_inflate_the_count(
    client: httpx2.AsyncClient, container: Container
) -> None:
    alice = await sign_up(client, "alice")
    bob = await sign_up(client, "bob")
    carol = await sign_up(client, "carol")
    post_id = await _post(client, alice)
    for _ in range(3):
        await _like(client, bob, post_id)
        await _unlike(client, bob, post_id)
    await _like(client, bob, post_id)
    await _like(client, carol, post_id)
    await _settled(container)

    [item] = await _items(client, alice)
    assert item["actor_count"] == 2
    assert {a["username"] for a in item["actors"]} == {"bob", "carol"}
    assert item["summary"] in ("bob and carol liked your post", "carol and bob liked your post")


async def test_follows_group_and_comments_do_not(
    client: httpx2.AsyncClient, container: Container
) -> None:
    alice = await sign_up(client, "alice")
    bob = await sign_up(client, "bob")
    carol = await sign_up(client, "carol")
    post_id = await _post(client, alice)
    for user in (bob, carol):
        await _graph(client, user, "follow", alice)
        await _comment(client, user, post_id, "first!")
    await _comment(client, bob, post_id, "second!")
    await _settled(container)

    follows = await _items(client, alice, kinds="follow")
    assert [(i["actor_count"], len(i["actors"])) for i in follows] == [(2, 2)]
    assert follows[0]["summary"] in ("bob and carol followed you", "carol and bob followed you")
    comments = await _items(client, alice, kinds="comment")
    assert len(comments) == 3
    assert len({c["comment_id"] for c in comments}) == 3
    assert all(c["actor_count"] == 1 for c in comments)


# --- unread counts and marking read ---------------------------------------------------------


async def test_unread_counts_and_marking_read(
    client: httpx2.AsyncClient, container: Container
) -> None:
    alice = await sign_up(client, "alice")
    bob = await sign_up(client, "bob")
    carol = await sign_up(client, "carol")
    first, second = await _post(client, alice, "one"), await _post(client, alice, "two")
    await _graph(client, bob, "follow", alice)
    await _wait_for(client, alice, 1)
    await _like(client, bob, first)
    await _wait_for(client, alice, 2)
    await _like(client, bob, second)
    items = await _wait_for(client, alice, 3)
    assert [i["kind"] for i in items] == ["like", "like", "follow"]  # newest activity first
    assert await _unread(client, alice) == 3

    # up to the middle item: it and everything listed below it
    response = await client.post(
        f"{URL}/read", json={"up_to_id": items[1]["id"]}, headers=alice.headers
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"count": 1}
    assert [i["read"] for i in await _items(client, alice)] == [False, True, True]
    assert [i["id"] for i in await _items(client, alice, unread="true")] == [items[0]["id"]]

    # all, with no body
    response = await client.post(f"{URL}/read", headers=alice.headers)
    assert response.status_code == 200, response.text
    assert response.json() == {"count": 0}
    assert await _items(client, alice, unread="true") == []
    assert all(i["read"] for i in await _items(client, alice))

    # new activity after reading opens a fresh unread group; the read one stays as history
    await _like(client, carol, first)
    fresh = await _wait_for(client, alice, 1, unread="true")
    assert fresh[0]["actor_count"] == 1
    assert fresh[0]["summary"] == "carol liked your post"
    assert fresh[0]["post_id"] == first
    assert await _unread(client, alice) == 1
    assert len(await _items(client, alice)) == 4
    await _settled(container)


async def test_mark_read_rejects_other_peoples_and_malformed_ids(
    client: httpx2.AsyncClient,
) -> None:
    alice = await sign_up(client, "alice")
    bob = await sign_up(client, "bob")
    await _graph(client, bob, "follow", alice)
    [item] = await _wait_for(client, alice, 1)

    response = await client.post(f"{URL}/read", json={"up_to_id": item["id"]}, headers=bob.headers)
    assert_problem(response, 404)
    for bad in ({"up_to_id": "abc"}, {"up_to_id": "1", "extra": True}, {"up_to_id": "-1"}):
        assert_problem(await client.post(f"{URL}/read", json=bad, headers=alice.headers), 422)
    response = await client.post(f"{URL}/read", json={"up_to_id": "12345"}, headers=alice.headers)
    assert_problem(response, 404)
    assert await _unread(client, alice) == 1

    response = await client.post(f"{URL}/read", json={}, headers=alice.headers)  # {} = all
    assert response.json() == {"count": 0}


# --- filters and pagination ---------------------------------------------------------------


async def test_kinds_and_unread_filters(client: httpx2.AsyncClient, container: Container) -> None:
    alice = await sign_up(client, "alice")
    bob = await sign_up(client, "bob")
    post_id = await _post(client, alice)
    await _graph(client, bob, "follow", alice)
    await _wait_for(client, alice, 1)
    await _like(client, bob, post_id)
    await _wait_for(client, alice, 2)
    await _comment(client, bob, post_id, "hi")
    await _wait_for(client, alice, 3)
    async with container.db.unit_of_work() as session:
        await notifications.notify_system(
            session,
            int(alice.user_id),
            title="Your webhook was disabled",
            body="It failed for 24 hours.",
            data={"webhook_id": "42"},
        )

    assert {i["kind"] for i in await _items(client, alice, kinds="like,follow")} == {
        "like",
        "follow",
    }
    assert [i["kind"] for i in await _items(client, alice, kinds=" comment ,")] == ["comment"]
    [system] = await _items(client, alice, kinds="system")
    assert system["summary"] == system["title"] == "Your webhook was disabled"
    assert system["body"] == "It failed for 24 hours."
    assert system["data"] == {"webhook_id": "42"}
    assert (system["actors"], system["actor_count"]) == ([], 0)
    assert await _items(client, alice, kinds="share,quote") == []

    body = assert_problem(
        await client.get(URL, params={"kinds": "like,poke"}, headers=alice.headers), 422
    )
    assert "poke" in body["detail"]
    assert body["errors"][0]["loc"] == ["query", "kinds"]
    assert_problem(await client.get(URL, params={"unread": "maybe"}, headers=alice.headers), 422)

    likes = await _items(client, alice, kinds="like")
    await client.post(f"{URL}/read", json={"up_to_id": likes[0]["id"]}, headers=alice.headers)
    unread = await _items(client, alice, unread="true")
    assert {i["kind"] for i in unread} == {"comment", "system"}  # listed above the like
    assert await _items(client, alice, unread="true", kinds="follow") == []
    assert await _unread(client, alice) == 2


async def test_pagination_follows_the_cursor(client: httpx2.AsyncClient) -> None:
    alice = await sign_up(client, "alice")
    bob = await sign_up(client, "bob")
    posts = [await _post(client, alice, f"post {n}") for n in range(5)]
    for post_id in posts:
        await _like(client, bob, post_id)
    everything = await _wait_for(client, alice, 5)

    seen: list[str] = []
    response = await client.get(URL, params={"limit": 2}, headers=alice.headers)
    pages = 0
    while True:
        assert response.status_code == 200, response.text
        body = response.json()
        assert len(body["data"]) <= 2
        seen += [i["id"] for i in body["data"]]
        pages += 1
        if body["next_cursor"] is None:
            assert "link" not in response.headers
            break
        assert 'rel="next"' in response.headers["link"]
        response = await client.get(
            URL, params={"limit": 2, "cursor": body["next_cursor"]}, headers=alice.headers
        )
    assert pages == 3
    assert seen == [i["id"] for i in everything]
    assert len(set(seen)) == 5
    assert_problem(await client.get(URL, params={"cursor": "garbage"}, headers=alice.headers), 400)
    assert_problem(await client.get(URL, params={"limit": 0}, headers=alice.headers), 422)


# --- who is never notified ------------------------------------------------------------------


async def test_no_notifications_for_your_own_actions(
    client: httpx2.AsyncClient, container: Container
) -> None:
    alice = await sign_up(client, "alice")
    post_id = await _post(client, alice, "me, @alice")
    await _like(client, alice, post_id)
    await _do(client, "POST", f"/api/v1/posts/{post_id}/share", alice)
    comment_id = await _comment(client, alice, post_id, "talking to myself @alice")
    await _comment(client, alice, post_id, "still me", parent=comment_id)
    await _post(client, alice, "quoting me", quote_post_id=post_id)
    await _settled(container)
    assert await _items(client, alice) == []
    assert await _unread(client, alice) == 0


async def test_no_notifications_from_muted_users(
    client: httpx2.AsyncClient, container: Container
) -> None:
    alice = await sign_up(client, "alice")
    bob = await sign_up(client, "bob")
    carol = await sign_up(client, "carol")
    post_id = await _post(client, alice)
    await _graph(client, alice, "mute", bob)

    await _like(client, bob, post_id)
    await _graph(client, bob, "follow", alice)
    await _comment(client, bob, post_id, "hello @alice")
    await _post(client, bob, "quote", quote_post_id=post_id)
    await _like(client, carol, post_id)
    await _settled(container)

    [item] = await _items(client, alice)
    assert (item["kind"], item["actor_count"]) == ("like", 1)
    assert [a["username"] for a in item["actors"]] == ["carol"]

    await _do(client, "DELETE", f"/api/v1/users/{bob.username}/mute", alice)
    await _graph(client, bob, "follow", carol)  # bob still reaches people who do not mute him
    await _wait_for(client, carol, 1)


async def test_blocked_users_disappear_from_notifications_either_way(
    client: httpx2.AsyncClient, container: Container
) -> None:
    alice = await sign_up(client, "alice")
    bob = await sign_up(client, "bob")
    carol = await sign_up(client, "carol")
    dave = await sign_up(client, "dave")
    post_id = await _post(client, alice)
    await _like(client, bob, post_id)
    await _wait_for(client, alice, 1)
    await _graph(client, bob, "follow", alice)
    await _wait_for(client, alice, 2)
    await _like(client, carol, post_id)
    await eventually(lambda: _has_like_count(client, alice, 2))

    assert await _unread(client, alice) == 2

    await _graph(client, alice, "block", bob)  # alice blocks bob
    items = await _items(client, alice)
    assert [i["kind"] for i in items] == ["like"]  # bob's follow is gone, his like hidden
    assert [a["username"] for a in items[0]["actors"]] == ["carol"]
    await _settled(container)  # the block's event removes bob from alice's notifications
    items = await _items(client, alice)
    assert [i["kind"] for i in items] == ["like"]
    assert items[0]["summary"] == "carol liked your post"  # no longer counted
    assert items[0]["actor_count"] == 1
    assert await _unread(client, alice) == 1  # the follow group is gone, not just hidden
    # bob can no longer reach alice: her post is invisible, following her refused
    assert (
        await client.put(f"/api/v1/posts/{post_id}/like", headers=bob.headers)
    ).status_code == 404
    assert (
        await client.put(f"/api/v1/users/{alice.username}/follow", headers=bob.headers)
    ).status_code in (404, 409)

    await _graph(client, dave, "follow", alice)
    await _wait_for(client, alice, 2)
    await _graph(client, dave, "block", alice)  # the other way round: dave blocks alice
    assert [i["kind"] for i in await _items(client, alice)] == ["like"]
    await _settled(container)
    assert [i["kind"] for i in await _items(client, alice)] == ["like"]
    assert await _unread(client, alice) == 1
    # unblocking does not bring them back: those notifications are gone for good
    await _do(client, "DELETE", f"/api/v1/users/{bob.username}/block", alice)
    await _settled(container)
    assert [i["actor_count"] for i in await _items(client, alice)] == [1]


async def _has_like_count(client: httpx2.AsyncClient, user: SignedIn, count: int) -> bool:
    likes = await _items(client, user, kinds="like")
    return len(likes) == 1 and likes[0]["actor_count"] == count


# --- access ----------------------------------------------------------------------------------


async def test_anonymous_callers_are_refused(client: httpx2.AsyncClient) -> None:
    assert_problem(await client.get(URL), 401)
    assert_problem(await client.get(f"{URL}/unread-count"), 401)
    assert_problem(await client.post(f"{URL}/read"), 401)
    assert_problem(await client.get(URL, headers={"Authorization": "Bearer nope"}), 401)


async def test_you_only_ever_see_and_mark_your_own(client: httpx2.AsyncClient) -> None:
    alice = await sign_up(client, "alice")
    bob = await sign_up(client, "bob")
    carol = await sign_up(client, "carol")
    await _graph(client, bob, "follow", alice)
    await _wait_for(client, alice, 1)

    assert await _items(client, carol) == []
    assert await _unread(client, carol) == 0
    response = await client.post(f"{URL}/read", headers=carol.headers)
    assert response.json() == {"count": 0}
    assert await _unread(client, alice) == 1
    assert [i["read"] for i in await _items(client, alice)] == [False]


async def test_listing_costs_the_same_queries_whatever_the_page_holds(
    client: httpx2.AsyncClient, container: Container
) -> None:
    """No N+1: actors of a whole page come in one query."""
    alice = await sign_up(client, "alice")
    posts = [await _post(client, alice, f"post {n}") for n in range(4)]
    fans = [await sign_up(client, f"fan{n}") for n in range(4)]
    statements: list[str] = []

    listing = asyncio.current_task()

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if asyncio.current_task() is listing:  # not the relay polling in the background
            statements.append(statement)

    async def queries_for_listing() -> int:
        statements.clear()
        event.listen(container.db.engine.sync_engine, "before_cursor_execute", count)
        try:
            await _items(client, alice)
        finally:
            event.remove(container.db.engine.sync_engine, "before_cursor_execute", count)
        return len(statements)

    await _like(client, fans[0], posts[0])
    await _wait_for(client, alice, 1)
    few = await queries_for_listing()
    assert few >= 2, statements  # the page, its actors (the principal is read on the driver)
    for fan in fans:
        for post_id in posts[1:]:
            await _like(client, fan, post_id)
        await _graph(client, fan, "follow", alice)
    await _settled(container)
    items = await _items(client, alice)
    assert len(items) == 5
    assert sum(len(i["actors"]) for i in items) == 1 + 3 * 3 + 3  # 4 distinct people
    assert await queries_for_listing() == few
