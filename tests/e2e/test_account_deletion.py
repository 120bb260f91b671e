"""Account deletion: ``DELETE /api/v1/me`` closes the account at once, the erasure
(:mod:`tidings.accounts.erasure`) removes what it made with every counter kept exact (on SQLite
and PostgreSQL, through the HTTP API)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx2
from sqlalchemy import func, select

from tests.support.api import DEFAULT_PASSWORD, SignedIn, assert_problem, login, make_admin, sign_up
from tests.support.rows import confirm_holder, drop_password
from tidings.accounts.erasure import erase_account, erase_pending
from tidings.accounts.models import User
from tidings.audit.models import AuditEvent
from tidings.comments.models import Comment
from tidings.core.container import Container
from tidings.events.models import OutboxMessage
from tidings.graph.models import Block, Follow, Mute
from tidings.notifications.models import NotificationGroup
from tidings.posts.models import Like, Post, PostMention, PostTag

Json = dict[str, Any]


async def _ok(response: httpx2.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json() if response.content else None


async def _post(client: httpx2.AsyncClient, user: SignedIn, **body: Any) -> str:
    made = await _ok(await client.post("/api/v1/posts", json=body, headers=user.headers), 201)
    return str(made["id"])


async def _comment(
    client: httpx2.AsyncClient, user: SignedIn, post_id: str, parent: str | None = None
) -> str:
    body: Json = {"text": f"a comment by {user.username}"}
    if parent is not None:
        body["parent_comment_id"] = parent
    url = f"/api/v1/posts/{post_id}/comments"
    return str((await _ok(await client.post(url, json=body, headers=user.headers), 201))["id"])


async def _rows(container: Container, stmt: Any) -> int:
    async with container.db.unit_of_work(write=False) as session:
        return int((await session.execute(stmt)).scalar_one())


async def _count(container: Container, model: Any, *where: Any) -> int:
    return await _rows(container, select(func.count()).select_from(model).where(*where))


async def _profile(client: httpx2.AsyncClient, viewer: SignedIn, username: str) -> Json:
    data: Json = await _ok(await client.get(f"/api/v1/users/{username}", headers=viewer.headers))
    return data


async def _delete_me(client: httpx2.AsyncClient, user: SignedIn, **body: Any) -> httpx2.Response:
    return await client.request("DELETE", "/api/v1/me", json=body, headers=user.headers)


async def test_a_deleted_account_is_closed_at_once_and_erased_with_exact_counts(
    client: httpx2.AsyncClient, container: Container
) -> None:
    alice = await sign_up(client, "alice")
    bob = await sign_up(client, "bob")
    carol = await sign_up(client, "carol")
    dave = await sign_up(client, "dave")
    for follower, followee in ((alice, "bob"), (bob, "alice"), (carol, "alice")):
        await _ok(await client.put(f"/api/v1/users/{followee}/follow", headers=follower.headers))
    await _ok(await client.put("/api/v1/users/dave/block", headers=alice.headers))
    await _ok(await client.put("/api/v1/users/carol/mute", headers=alice.headers))

    bobs = await _post(client, bob, text="bob's post")
    alices = await _post(client, alice, text="hello #erasure @bob", links=["https://a.test/x"])
    quote = await _post(client, alice, text="look", quote_post_id=bobs)
    gone_before = await _post(client, alice, text="deleted earlier #old")
    await _ok(await client.delete(f"/api/v1/posts/{gone_before}", headers=alice.headers), 204)
    link_only = await _post(client, alice, quote_post_id=bobs, links=["https://a.test/home"])
    await _ok(await client.delete(f"/api/v1/posts/{link_only}", headers=alice.headers), 204)
    await _ok(await client.put("/api/v1/users/alice/mute", headers=carol.headers))
    await _ok(await client.put(f"/api/v1/posts/{bobs}/like", headers=alice.headers))
    await _ok(await client.post(f"/api/v1/posts/{bobs}/share", headers=alice.headers), 201)
    await _ok(await client.put(f"/api/v1/posts/{alices}/like", headers=bob.headers))
    await _ok(await client.post(f"/api/v1/posts/{alices}/share", headers=bob.headers), 201)
    await _comment(client, carol, alices)
    threaded = await _comment(client, alice, bobs)  # bob replies: it stays as a placeholder
    reply = await _comment(client, bob, bobs, parent=threaded)
    await _comment(client, alice, bobs)  # a leaf: it leaves the thread
    before = await _ok(await client.get(f"/api/v1/posts/{bobs}", headers=bob.headers))
    counts = before["counts"]
    assert (counts["likes"], counts["shares"], counts["comments"], counts["quotes"]) == (1, 1, 3, 1)
    assert (await _profile(client, bob, "bob"))["follower_count"] == 1

    # the wrong password changes nothing
    wrong = await _delete_me(client, alice, password="not-the-password-1")
    assert assert_problem(wrong, 422)["errors"][0]["loc"] == ["body", "password"]
    missing = await _delete_me(client, alice)
    assert_problem(missing, 422)
    assert (await client.get("/api/v1/me", headers=alice.headers)).status_code == 200

    accepted = await _ok(await _delete_me(client, alice, password=DEFAULT_PASSWORD), 202)
    assert accepted["username"] == "alice"
    assert accepted["status"] == "erasing"
    assert accepted["deleted_at"]

    # closed at once: no token, no sign-in, no profile, a second delete finds nothing
    assert_problem(await client.get("/api/v1/me", headers=alice.headers), 401)
    signin = await client.post(
        "/api/v1/auth/token",
        data={"grant_type": "password", "username": "alice", "password": DEFAULT_PASSWORD},
    )
    assert signin.status_code in (400, 401), signin.text
    assert_problem(await client.get("/api/v1/users/alice", headers=bob.headers), 404)
    assert_problem(await client.put("/api/v1/users/alice/follow", headers=dave.headers), 404)
    async with container.db.unit_of_work(write=False) as session:
        row = await session.get(User, int(alice.user_id))
        assert row is not None
        assert row.email.endswith("@erased.invalid")
        assert row.password_hash is None
        assert row.deleted_at is not None
        assert row.erased_at is None
        alice_id = row.id
    events = select(func.count()).where(
        OutboxMessage.event_type == "user.deleted", OutboxMessage.aggregate_id == alice_id
    )
    assert await _rows(container, events) == 1

    # the erasure: a first slice stops part-way (resumable), the next pass finishes it
    assert not await erase_account(container.db, alice_id, batch=1, max_batches=3)
    assert await _count(container, Like, Like.user_id == alice_id) == 1  # not there yet
    while not await erase_account(container.db, alice_id, batch=2, max_batches=5):
        async with container.db.unit_of_work(write=False) as session:
            row = await session.get(User, alice_id)
            assert row is not None
            if row.erased_at is not None:  # the background loop finished it first
                break

    after = await _ok(await client.get(f"/api/v1/posts/{bobs}", headers=bob.headers))
    counts = after["counts"]
    assert (counts["likes"], counts["shares"], counts["comments"], counts["quotes"]) == (0, 0, 1, 0)
    bob_profile = await _profile(client, bob, "bob")
    assert (bob_profile["follower_count"], bob_profile["following_count"]) == (0, 0)
    assert bob_profile["post_count"] == 1
    assert (await _profile(client, carol, "carol"))["following_count"] == 0
    timeline = await _ok(await client.get("/api/v1/users/bob/posts", headers=carol.headers))
    assert [p["id"] for p in timeline["data"]] == [bobs]  # bob's share of alice's post went
    feed = await _ok(await client.get("/api/v1/feed", headers=bob.headers))
    assert not {alices, quote} & {p["id"] for p in feed["data"]}
    assert_problem(await client.get(f"/api/v1/posts/{alices}", headers=bob.headers), 404)
    thread = await _ok(await client.get(f"/api/v1/posts/{bobs}/comments", headers=bob.headers))
    shown = {c["id"]: c for c in thread["data"]}
    assert set(shown) == {threaded}, shown  # the placeholder; the leaf left
    assert shown[threaded]["deleted"]
    assert shown[threaded]["text"] == ""
    assert shown[threaded]["reply_count"] == 1
    replies = await client.get(f"/api/v1/comments/{threaded}/replies", headers=bob.headers)
    assert [c["id"] for c in (await _ok(replies))["data"]] == [reply]

    # nothing of alice's is left but the row, which no longer carries her name
    assert await _count(container, Post, Post.author_id == alice_id, Post.deleted_at.is_(None)) == 0
    assert await _count(container, Post, Post.author_id == alice_id, Post.text != "") == 0
    assert await _count(container, Comment, Comment.author_id == alice_id, Comment.text != "") == 0
    alice_posts = select(Post.id).where(Post.author_id == alice_id)
    assert await _count(container, PostTag, PostTag.post_id.in_(alice_posts)) == 0
    assert await _count(container, PostMention, PostMention.post_id.in_(alice_posts)) == 0
    assert await _count(container, Like, Like.user_id == alice_id) == 0
    both_ways = (Follow.follower_id == alice_id) | (Follow.followee_id == alice_id)
    assert await _count(container, Follow, both_ways) == 0
    assert await _count(container, Block, Block.blocker_id == alice_id) == 0
    assert await _count(container, Mute, Mute.muter_id == alice_id) == 0
    # carol's mute of alice: no one could undo it any more
    assert await _count(container, Mute, Mute.muted_id == alice_id) == 0
    async with container.db.unit_of_work(write=False) as session:
        quoted = await session.get(Post, int(link_only))
        assert quoted is not None
        assert quoted.links == []  # a quote deleted before: its links went too
    assert (
        await _count(container, NotificationGroup, NotificationGroup.recipient_id == alice_id) == 0
    )
    async with container.db.unit_of_work(write=False) as session:
        row = await session.get(User, alice_id)
        assert row is not None
        assert row.erased_at is not None
        assert row.username == f"~{alice_id}"
        assert row.follower_count == row.post_count == 0
        actions = (
            await session.execute(
                select(AuditEvent.action).where(
                    AuditEvent.target_type == "user", AuditEvent.target_id == str(alice_id)
                )
            )
        ).scalars()
        assert {"account:deleted", "account:erased"} <= set(actions)
    erased = select(func.count()).where(
        OutboxMessage.event_type == "user.erased", OutboxMessage.aggregate_id == alice_id
    )
    assert await _rows(container, erased) == 1
    assert await erase_pending(container.db, batch=10, max_batches=10) == 0  # nothing left

    # the name is free again, for a new account that starts from nothing
    again = await sign_up(client, "alice")
    assert again.user_id != alice_id
    fresh = await _profile(client, bob, "alice")
    assert (fresh["follower_count"], fresh["post_count"]) == (0, 0)


async def test_an_account_without_a_password_confirms_with_its_username(
    client: httpx2.AsyncClient, container: Container
) -> None:
    user = await sign_up(client, "provider_made")
    await drop_password(container, int(user.user_id))  # as a sign-in provider makes it
    unconfirmed = await _delete_me(client, user, confirm_username="provider_made")
    assert "confirm it is you" in assert_problem(unconfirmed, 403)["detail"]
    await confirm_holder(container, int(user.user_id), timedelta(minutes=2))
    wrong = await _delete_me(client, user, confirm_username="someone_else")
    assert assert_problem(wrong, 422)["errors"][0]["loc"] == ["body", "confirm_username"]
    assert (await client.get("/api/v1/me", headers=user.headers)).status_code == 200
    await _ok(await _delete_me(client, user, confirm_username="Provider_Made"), 202)
    assert_problem(await client.get("/api/v1/me", headers=user.headers), 401)


async def test_admins_delete_accounts_but_not_their_own_or_another_admins(
    client: httpx2.AsyncClient, container: Container
) -> None:
    await make_admin(container, "root_admin")
    await make_admin(container, "other_admin")
    admin = await login(client, "root_admin")
    user = await sign_up(client, "spammer")
    moderator = await sign_up(client, "the_mod")
    await _ok(
        await client.patch(
            "/api/v1/admin/users/the_mod", json={"role": "moderator"}, headers=admin.headers
        )
    )
    assert_problem(
        await client.delete("/api/v1/admin/users/spammer", headers=moderator.headers), 403
    )
    assert_problem(
        await client.delete("/api/v1/admin/users/root_admin", headers=admin.headers), 409
    )
    assert_problem(
        await client.delete("/api/v1/admin/users/other_admin", headers=admin.headers), 409
    )
    assert_problem(await _delete_me(client, admin, password=DEFAULT_PASSWORD), 409)
    assert_problem(
        await client.delete("/api/v1/admin/users/nobody_here", headers=admin.headers), 404
    )

    done = await _ok(await client.delete("/api/v1/admin/users/spammer", headers=admin.headers), 202)
    assert done["username"] == "spammer"
    assert_problem(await client.get("/api/v1/me", headers=user.headers), 401)
    assert_problem(await client.delete("/api/v1/admin/users/spammer", headers=admin.headers), 404)
    assert_problem(
        await client.patch(
            "/api/v1/admin/users/spammer", json={"suspended": False}, headers=admin.headers
        ),
        404,
    )  # a deleted account cannot be brought back half erased
    listed = await _ok(await client.get("/api/v1/admin/users", headers=admin.headers))
    assert "spammer" not in {u["username"] for u in listed["data"]}
    async with container.db.unit_of_work(write=False) as session:
        event = (
            await session.execute(
                select(OutboxMessage.payload).where(
                    OutboxMessage.event_type == "user.deleted",
                    OutboxMessage.aggregate_id == int(user.user_id),
                )
            )
        ).scalar_one()
    assert event["by_admin"] is True
    admin_id = (await _ok(await client.get("/api/v1/me", headers=admin.headers)))["id"]
    assert event["deleted_by"] == admin_id
    assert await erase_pending(container.db, batch=50, max_batches=50) in (0, 1)
    async with container.db.unit_of_work(write=False) as session:
        row = await session.get(User, int(user.user_id))
        assert row is not None
        assert row.erased_at is not None


async def test_a_malformed_deletion_body_is_a_problem(client: httpx2.AsyncClient) -> None:
    user = await sign_up(client, "careful")
    for body in ({"password": 5}, {"password": "x" * 129}, {"unknown": "field"}):
        assert_problem(await _delete_me(client, user, **body), 422)
    raw = await client.request(
        "DELETE",
        "/api/v1/me",
        content=b"{not json",
        headers={**user.headers, "content-type": "application/json"},
    )
    assert_problem(raw, 400)
    assert (await client.get("/api/v1/me", headers=user.headers)).status_code == 200
