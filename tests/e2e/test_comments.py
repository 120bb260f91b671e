"""Threaded comments: a walk through a thread, tombstones, moderation, bad input, idempotency."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx2
import pytest
from sqlalchemy import func, select

from tests.support.api import SignedIn, assert_problem, login, make_admin, sign_up
from tidings.comments.models import Comment
from tidings.core.container import Container
from tidings.events.models import OutboxMessage

Json = dict[str, Any]


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
) -> Json:
    body: Json = {"text": text}
    if parent is not None:
        body["parent_comment_id"] = parent
    response = await client.post(
        f"/api/v1/posts/{post_id}/comments", json=body, headers=user.headers
    )
    assert response.status_code == 201, response.text
    data: Json = response.json()
    return data


async def _comment_count(client: httpx2.AsyncClient, post_id: str) -> int:
    response = await client.get(f"/api/v1/posts/{post_id}")
    assert response.status_code == 200, response.text
    count: int = response.json()["counts"]["comments"]
    return count


async def _get(
    client: httpx2.AsyncClient, path: str, user: SignedIn | None = None, **params: Any
) -> Json:
    response = await client.get(path, params=params, headers=user.headers if user else None)
    assert response.status_code == 200, response.text
    data: Json = response.json()
    return data


async def _ids(
    client: httpx2.AsyncClient, path: str, user: SignedIn | None = None, **params: Any
) -> list[str]:
    return [c["id"] for c in (await _get(client, path, user, **params))["data"]]


async def _walk(client: httpx2.AsyncClient, path: str, **params: Any) -> list[str]:
    """Every id of a list, page by page, following next_cursor and the Link header."""
    seen: list[str] = []
    response = await client.get(path, params=params)
    while True:
        assert response.status_code == 200, response.text
        body = response.json()
        seen.extend(c["id"] for c in body["data"])
        if body["next_cursor"] is None:
            assert "link" not in response.headers
            return seen
        link = response.headers["link"]
        assert link.endswith('>; rel="next"')
        assert f"cursor={body['next_cursor']}" in link
        response = await client.get(link[1 : link.index(">")])


async def _rows(container: Container, *, live_only: bool = False) -> int:
    stmt = select(func.count()).select_from(Comment)
    if live_only:
        stmt = stmt.where(Comment.deleted_at.is_(None))
    async with container.db.unit_of_work(write=False) as session:
        return int((await session.execute(stmt)).scalar_one())


async def _events(container: Container, event_type: str) -> list[Json]:
    stmt = (
        select(OutboxMessage.payload)
        .where(OutboxMessage.event_type == event_type)
        .order_by(OutboxMessage.id)
    )
    async with container.db.unit_of_work(write=False) as session:
        return [dict(p) for p in (await session.execute(stmt)).scalars()]


async def _moderator(client: httpx2.AsyncClient, container: Container, name: str) -> SignedIn:
    user = await sign_up(client, name)
    await make_admin(container, "boss")
    boss = await login(client, "boss")
    promoted = await client.patch(
        f"/api/v1/admin/users/{name}", json={"role": "moderator"}, headers=boss.headers
    )
    assert promoted.status_code == 200, promoted.text
    return user


# --- the walk ----------------------------------------------------------------------------------


async def test_threaded_comment_walk(client: httpx2.AsyncClient, container: Container) -> None:
    alice = await sign_up(client, "alice")
    bob = await sign_up(client, "bob")
    carol = await sign_up(client, "carol")
    pid = await _post(client, alice, "Talk to me")

    created = await client.post(
        f"/api/v1/posts/{pid}/comments", json={"text": "  first! @carol  "}, headers=bob.headers
    )
    assert created.status_code == 201, created.text
    top = created.json()
    assert created.headers["location"] == f"/api/v1/comments/{top['id']}"
    assert created.headers["etag"].startswith('"1-')
    assert top["post_id"] == pid
    assert top["parent_comment_id"] is None
    assert top["depth"] == 0
    assert top["text"] == "first! @carol"
    assert top["author"] == {
        "id": bob.user_id,
        "username": "bob",
        "display_name": "bob",
        "avatar_url": None,
    }
    assert top["deleted"] is False
    assert top["reply_count"] == 0
    assert top["version"] == 1
    assert top["edited_at"] is None
    assert top["created_at"].endswith("Z")
    assert await _comment_count(client, pid) == 1

    reply = await _comment(client, carol, pid, "a reply", parent=top["id"])
    assert (reply["depth"], reply["parent_comment_id"]) == (1, top["id"])
    deep = await _comment(client, alice, pid, "a reply to the reply", parent=reply["id"])
    assert (deep["depth"], deep["parent_comment_id"]) == (2, reply["id"])
    assert await _comment_count(client, pid) == 3
    assert (await _get(client, f"/api/v1/comments/{top['id']}"))["reply_count"] == 1
    assert (await _get(client, f"/api/v1/comments/{reply['id']}"))["reply_count"] == 1

    # the outbox has one CommentCreated per comment, naming who to notify
    events = await _events(container, "comment.created")
    assert [e["comment_id"] for e in events] == [top["id"], reply["id"], deep["id"]]
    assert events[0]["post_author_id"] == alice.user_id
    assert events[0]["parent_author_id"] is None
    # (nested ids are not stringified by DomainEvent.payload today; compare by value)
    assert [str(u) for u in events[0]["mentioned_user_ids"]] == [carol.user_id]
    assert events[1]["parent_comment_id"] == top["id"]
    assert events[1]["parent_author_id"] == bob.user_id
    assert events[2]["parent_author_id"] == carol.user_id

    # more top-level comments; lists are top-level only, in both orders, page by page
    others = [await _comment(client, u, pid, f"comment {i}") for i, u in enumerate([carol, alice])]
    others += [await _comment(client, bob, pid, f"more {i}") for i in range(3)]
    oldest = [top["id"]] + [c["id"] for c in others]
    assert await _comment_count(client, pid) == 8
    path = f"/api/v1/posts/{pid}/comments"
    assert await _ids(client, path) == oldest
    assert await _ids(client, path, alice, sort="oldest") == oldest
    assert await _ids(client, path, sort="newest") == oldest[::-1]
    assert await _walk(client, path, limit=2) == oldest
    assert await _walk(client, path, limit=4, sort="newest") == oldest[::-1]
    assert await _walk(client, path, limit=6) == oldest
    first = await _get(client, path, limit=2)
    assert first["next_cursor"]
    wrong_order = await client.get(path, params={"sort": "newest", "cursor": first["next_cursor"]})
    assert_problem(wrong_order, 400)
    listed = (await _get(client, path, limit=1))["data"][0]
    assert listed == (await _get(client, f"/api/v1/comments/{top['id']}"))

    assert await _ids(client, f"/api/v1/comments/{top['id']}/replies") == [reply["id"]]
    assert await _ids(client, f"/api/v1/comments/{reply['id']}/replies") == [deep["id"]]
    assert await _ids(client, f"/api/v1/comments/{deep['id']}/replies") == []
    replies = [await _comment(client, alice, pid, f"r{i}", parent=top["id"]) for i in range(2)]
    replies_oldest = [reply["id"]] + [r["id"] for r in replies]
    rpath = f"/api/v1/comments/{top['id']}/replies"
    assert await _walk(client, rpath, limit=1) == replies_oldest
    assert await _walk(client, rpath, limit=2, sort="newest") == replies_oldest[::-1]
    assert (await _get(client, f"/api/v1/comments/{top['id']}"))["reply_count"] == 3

    # edit: author only, If-Match honoured, If-None-Match answers 304
    read = await client.get(f"/api/v1/comments/{top['id']}")
    etag = read.headers["etag"]
    cached = await client.get(f"/api/v1/comments/{top['id']}", headers={"If-None-Match": etag})
    assert cached.status_code == 304
    edited = await client.patch(
        f"/api/v1/comments/{top['id']}",
        json={"text": "first, edited"},
        headers={**bob.headers, "If-Match": etag},
    )
    assert edited.status_code == 200, edited.text
    assert edited.json()["text"] == "first, edited"
    assert edited.json()["version"] == 2
    assert edited.json()["edited_at"] is not None
    assert edited.headers["etag"].startswith('"2-')
    stale = await client.patch(
        f"/api/v1/comments/{top['id']}",
        json={"text": "lost update"},
        headers={**bob.headers, "If-Match": etag},
    )
    assert_problem(stale, 412)
    assert_problem(
        await client.patch(
            f"/api/v1/comments/{top['id']}", json={"text": "mine now"}, headers=carol.headers
        ),
        403,
    )
    assert (await _get(client, f"/api/v1/comments/{top['id']}"))["text"] == "first, edited"
    assert_problem(await client.delete(f"/api/v1/comments/{top['id']}", headers=carol.headers), 403)

    # delete in the middle of the thread: a tombstone that keeps the replies reachable
    gone = await client.delete(f"/api/v1/comments/{reply['id']}", headers=carol.headers)
    assert gone.status_code == 204
    assert await _comment_count(client, pid) == 9
    tomb = await _get(client, f"/api/v1/comments/{reply['id']}")
    assert tomb["deleted"] is True
    assert tomb["text"] == ""
    assert tomb["author"] is None
    assert tomb["reply_count"] == 1
    in_thread = (await _get(client, rpath))["data"]
    assert [c["id"] for c in in_thread] == replies_oldest
    assert in_thread[0] == tomb
    assert await _ids(client, f"/api/v1/comments/{reply['id']}/replies") == [deep["id"]]
    assert (await _get(client, f"/api/v1/comments/{deep['id']}"))["text"] == (
        "a reply to the reply"
    )
    assert_problem(
        await client.delete(f"/api/v1/comments/{reply['id']}", headers=carol.headers), 404
    )
    assert_problem(
        await client.patch(
            f"/api/v1/comments/{reply['id']}", json={"text": "back"}, headers=carol.headers
        ),
        404,
    )
    to_tomb = await client.post(
        f"/api/v1/posts/{pid}/comments",
        json={"text": "hello?", "parent_comment_id": reply["id"]},
        headers=bob.headers,
    )
    problem = assert_problem(to_tomb, 422)
    assert problem["errors"][0]["loc"] == ["body", "parent_comment_id"]
    assert await _comment_count(client, pid) == 9

    # the last reply below the tombstone goes: the tombstone leaves the thread too
    assert (
        await client.delete(f"/api/v1/comments/{deep['id']}", headers=alice.headers)
    ).status_code == 204
    assert await _comment_count(client, pid) == 8
    assert_problem(await client.get(f"/api/v1/comments/{reply['id']}"), 404)
    assert_problem(await client.get(f"/api/v1/comments/{deep['id']}"), 404)
    assert_problem(await client.get(f"/api/v1/comments/{reply['id']}/replies"), 404)
    assert await _ids(client, rpath) == [r["id"] for r in replies]
    assert (await _get(client, f"/api/v1/comments/{top['id']}"))["reply_count"] == 2

    # a top-level leaf disappears from the list; one with replies stays as a tombstone
    leaf = others[0]
    assert (
        await client.delete(f"/api/v1/comments/{leaf['id']}", headers=carol.headers)
    ).status_code == 204
    assert await _comment_count(client, pid) == 7
    assert await _ids(client, path) == [top["id"]] + [c["id"] for c in others[1:]]

    # a moderator may delete anyone's comment; others may not
    mod = await _moderator(client, container, "mod")
    assert (
        await client.delete(f"/api/v1/comments/{top['id']}", headers=mod.headers)
    ).status_code == 204
    assert await _comment_count(client, pid) == 6
    listed_top = (await _get(client, path))["data"][0]
    assert listed_top["id"] == top["id"]
    assert listed_top["deleted"] is True
    assert listed_top["author"] is None
    assert listed_top["reply_count"] == 2
    assert await _ids(client, rpath) == [r["id"] for r in replies]
    deleted_events = await _events(container, "comment.deleted")
    assert [e["comment_id"] for e in deleted_events] == [
        reply["id"],
        deep["id"],
        leaf["id"],
        top["id"],
    ]
    assert deleted_events[-1]["user_id"] == mod.user_id

    # replies going leave the top-level tombstone without replies: it leaves the list
    for r in replies:
        assert (
            await client.delete(f"/api/v1/comments/{r['id']}", headers=alice.headers)
        ).status_code == 204
    assert await _ids(client, path) == [c["id"] for c in others[1:]]
    assert await _comment_count(client, pid) == 4
    assert await _rows(container, live_only=True) == 4
    assert await _rows(container) == 10


async def test_comments_on_a_share_go_to_the_original(client: httpx2.AsyncClient) -> None:
    alice = await sign_up(client, "alice")
    bob = await sign_up(client, "bob")
    pid = await _post(client, alice, "share me")
    shared = await client.post(f"/api/v1/posts/{pid}/share", headers=bob.headers)
    assert shared.status_code == 201, shared.text
    share_id = shared.json()["share_id"]

    comment = await _comment(client, alice, share_id, "via the share")
    assert comment["post_id"] == pid
    assert await _comment_count(client, pid) == 1
    assert await _ids(client, f"/api/v1/posts/{pid}/comments") == [comment["id"]]
    assert await _ids(client, f"/api/v1/posts/{share_id}/comments") == [comment["id"]]

    # once the post is gone, so are its comments
    assert (await client.delete(f"/api/v1/posts/{pid}", headers=alice.headers)).status_code == 204
    assert_problem(await client.get(f"/api/v1/posts/{pid}/comments"), 404)
    assert_problem(await client.get(f"/api/v1/comments/{comment['id']}"), 404)
    assert_problem(await client.get(f"/api/v1/comments/{comment['id']}/replies"), 404)
    late = await client.post(
        f"/api/v1/posts/{pid}/comments", json={"text": "too late"}, headers=bob.headers
    )
    assert_problem(late, 404)
    assert_problem(
        await client.delete(f"/api/v1/comments/{comment['id']}", headers=alice.headers), 404
    )


# --- visibility ----------------------------------------------------------------------------------


async def test_comments_follow_post_visibility_and_blocks(
    client: httpx2.AsyncClient, container: Container
) -> None:
    alice = await sign_up(client, "alice")
    bob = await sign_up(client, "bob")
    carol = await sign_up(client, "carol")

    hidden = await _post(client, alice, "for my followers", visibility="followers")
    own = await _comment(client, alice, hidden, "only followers see this")
    for path in (f"/api/v1/posts/{hidden}/comments", f"/api/v1/comments/{own['id']}"):
        assert_problem(await client.get(path, headers=bob.headers), 404)
        assert_problem(await client.get(path), 404)
    assert_problem(await client.get(f"/api/v1/comments/{own['id']}/replies"), 404)
    attempt = await client.post(
        f"/api/v1/posts/{hidden}/comments", json={"text": "let me in"}, headers=bob.headers
    )
    assert_problem(attempt, 404)
    assert await _rows(container) == 1
    assert (await client.put("/api/v1/users/alice/follow", headers=bob.headers)).status_code == 200
    await _comment(client, bob, hidden, "now I can")
    assert len(await _ids(client, f"/api/v1/posts/{hidden}/comments", bob)) == 2

    # blocks, either way: no commenting, and each other's comments are hidden
    public = await _post(client, alice, "public")
    by_carol = await _comment(client, carol, public, "carol here")
    by_bob = await _comment(client, bob, public, "bob here")
    assert (await client.put("/api/v1/users/bob/block", headers=carol.headers)).status_code == 200
    path = f"/api/v1/posts/{public}/comments"
    assert await _ids(client, path) == [by_carol["id"], by_bob["id"]]
    assert await _ids(client, path, bob) == [by_bob["id"]]
    assert await _ids(client, path, carol) == [by_carol["id"]]
    assert_problem(await client.get(f"/api/v1/comments/{by_carol['id']}", headers=bob.headers), 404)
    assert_problem(await client.get(f"/api/v1/comments/{by_bob['id']}", headers=carol.headers), 404)
    assert_problem(
        await client.get(f"/api/v1/comments/{by_bob['id']}/replies", headers=carol.headers), 404
    )
    reply_to_blocked = await client.post(
        f"/api/v1/posts/{public}/comments",
        json={"text": "hey", "parent_comment_id": by_carol["id"]},
        headers=bob.headers,
    )
    assert_problem(reply_to_blocked, 422)

    before = await _rows(container)
    assert (await client.put("/api/v1/users/bob/block", headers=alice.headers)).status_code == 200
    blocked = await client.post(
        f"/api/v1/posts/{public}/comments", json={"text": "blocked"}, headers=bob.headers
    )
    assert_problem(blocked, 404)
    assert_problem(await client.get(path, headers=bob.headers), 404)
    dave = await sign_up(client, "dave")
    dave_post = await _post(client, dave, "dave's")
    assert (await client.put("/api/v1/users/dave/block", headers=carol.headers)).status_code == 200
    blocker = await client.post(
        f"/api/v1/posts/{dave_post}/comments", json={"text": "I blocked you"}, headers=carol.headers
    )
    assert_problem(blocker, 404)
    assert await _rows(container) == before
    assert await _comment_count(client, public) == 2

    # a suspended author's comments disappear from lists and reads
    await make_admin(container, "boss")
    boss = await login(client, "boss")
    suspended = await client.patch(
        "/api/v1/admin/users/carol", json={"suspended": True}, headers=boss.headers
    )
    assert suspended.status_code == 200, suspended.text
    assert await _ids(client, path) == [by_bob["id"]]
    assert_problem(await client.get(f"/api/v1/comments/{by_carol['id']}"), 404)


# --- bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"text": "x" * 2001}, "text"),
        ({"text": ""}, "text"),
        ({"text": "   "}, "text"),
        ({}, "text"),
        ({"text": 12}, "text"),
        ({"text": "nul \u0000 inside"}, "text"),
        ({"text": "hi", "visibility": "public"}, "visibility"),
        ({"text": "hi", "parent_comment_id": "abc"}, "parent_comment_id"),
        ({"text": "hi", "parent_comment_id": "99999999999999999999"}, "parent_comment_id"),
    ],
)
async def test_invalid_comment_is_422_and_writes_nothing(
    client: httpx2.AsyncClient, container: Container, body: Json, field: str
) -> None:
    alice = await sign_up(client, "alice")
    pid = await _post(client, alice)
    response = await client.post(f"/api/v1/posts/{pid}/comments", json=body, headers=alice.headers)
    problem = assert_problem(response, 422)
    assert any(field in err["loc"] for err in problem["errors"]), problem
    assert await _rows(container) == 0
    assert await _comment_count(client, pid) == 0


async def test_bad_parents_and_posts_are_rejected(
    client: httpx2.AsyncClient, container: Container
) -> None:
    alice = await sign_up(client, "alice")
    pid = await _post(client, alice, "one")
    other = await _post(client, alice, "two")
    elsewhere = await _comment(client, alice, other, "on the other post")

    def reply(parent: str) -> Json:
        return {"text": "reply", "parent_comment_id": parent}

    for parent in (elsewhere["id"], "123456789"):
        response = await client.post(
            f"/api/v1/posts/{pid}/comments", json=reply(parent), headers=alice.headers
        )
        problem = assert_problem(response, 422)
        assert problem["errors"][0]["loc"] == ["body", "parent_comment_id"]

    # depth: 0 .. 8 are fine, a reply at depth 9 is not
    parent = None
    for depth in range(9):
        made = await _comment(client, alice, pid, f"level {depth}", parent=parent)
        assert made["depth"] == depth
        parent = made["id"]
    assert parent is not None
    too_deep = await client.post(
        f"/api/v1/posts/{pid}/comments", json=reply(parent), headers=alice.headers
    )
    problem = assert_problem(too_deep, 422)
    assert problem["errors"][0]["loc"] == ["body", "parent_comment_id"]
    assert await _rows(container) == 10
    assert await _comment_count(client, pid) == 9

    missing = await client.post(
        "/api/v1/posts/123456789/comments", json={"text": "hello"}, headers=alice.headers
    )
    assert_problem(missing, 404)
    assert_problem(await client.get("/api/v1/posts/123456789/comments"), 404)
    assert_problem(await client.get("/api/v1/comments/123456789"), 404)
    assert_problem(await client.get("/api/v1/comments/123456789/replies"), 404)
    assert_problem(
        await client.patch("/api/v1/comments/123456789", json={"text": "x"}, headers=alice.headers),
        404,
    )
    assert_problem(await client.delete("/api/v1/comments/123456789", headers=alice.headers), 404)
    assert_problem(await client.get("/api/v1/comments/0"), 404)
    assert_problem(await client.get("/api/v1/comments/not-an-id"), 422)

    path = f"/api/v1/posts/{pid}/comments"
    assert_problem(await client.get(path, params={"cursor": "garbage!"}), 400)
    assert_problem(await client.get(path, params={"cursor": "eyJ2IjoxfQ"}), 400)  # {"v":1}
    assert_problem(await client.get(f"/api/v1/comments/{parent}/replies?cursor=%%%"), 400)
    assert_problem(await client.get(path, params={"limit": 101}), 422)
    assert_problem(await client.get(path, params={"limit": 0}), 422)
    assert_problem(await client.get(path, params={"sort": "sideways"}), 422)

    edit = f"/api/v1/comments/{parent}"
    for body in ({"text": ""}, {"text": "x" * 2001}, {"text": "ok", "depth": 0}, {}):
        assert_problem(await client.patch(edit, json=body, headers=alice.headers), 422)
    assert (await _get(client, edit))["version"] == 1

    # anonymous writes are 401
    assert_problem(await client.post(path, json={"text": "anon"}), 401)
    assert_problem(await client.patch(edit, json={"text": "anon"}), 401)
    assert_problem(await client.delete(edit), 401)
    assert await _rows(container) == 10


# --- idempotency -------------------------------------------------------------------------------


async def test_idempotency_key_on_comments(
    client: httpx2.AsyncClient, container: Container
) -> None:
    alice = await sign_up(client, "alice")
    pid = await _post(client, alice)
    path = f"/api/v1/posts/{pid}/comments"
    headers = {**alice.headers, "Idempotency-Key": "comment-1"}

    first = await client.post(path, json={"text": "once"}, headers=headers)
    assert first.status_code == 201, first.text
    again = await client.post(path, json={"text": "once"}, headers=headers)
    assert again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    different = await client.post(path, json={"text": "twice"}, headers=headers)
    assert_problem(different, 422)
    assert await _rows(container) == 1
    assert await _comment_count(client, pid) == 1

    # another user's key space is their own
    bob = await sign_up(client, "bob")
    theirs = await client.post(
        path, json={"text": "once"}, headers={**bob.headers, "Idempotency-Key": "comment-1"}
    )
    assert theirs.status_code == 201
    assert theirs.json()["id"] != first.json()["id"]
    assert await _rows(container) == 2


async def test_concurrent_identical_comments_with_one_key_create_one(
    client: httpx2.AsyncClient, container: Container
) -> None:
    alice = await sign_up(client, "alice")
    pid = await _post(client, alice)
    parent = await _comment(client, alice, pid, "parent")
    headers = {**alice.headers, "Idempotency-Key": "burst"}
    body = {"text": "only once", "parent_comment_id": parent["id"]}

    responses = await asyncio.gather(
        *(
            client.post(f"/api/v1/posts/{pid}/comments", json=body, headers=headers)
            for _ in range(20)
        )
    )
    assert [r.status_code for r in responses] == [201] * 20, [r.text for r in responses]
    assert len({r.json()["id"] for r in responses}) == 1
    assert await _rows(container) == 2
    assert await _comment_count(client, pid) == 2
    assert (await _get(client, f"/api/v1/comments/{parent['id']}"))["reply_count"] == 1
    assert len(await _events(container, "comment.created")) == 2
