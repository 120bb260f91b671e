"""Every write schema refuses privileged fields with 422 and changes nothing."""

from __future__ import annotations

import httpx2

from tests.support.api import DEFAULT_PASSWORD, assert_problem, login, make_admin, sign_up
from tidings.core.container import Container

PRIVILEGED_USER_FIELDS: list[dict[str, object]] = [
    {"role": "admin"},
    {"suspended": True},
    {"email_verified": True},
    {"id": "1"},
    {"follower_count": 10**6},
    {"following_count": 5},
    {"post_count": 5},
    {"password_hash": "x"},
    {"created_at": "2020-01-01T00:00:00Z"},
    {"email": "x@example.com"},
    {"username": "someone_else"},
]
PRIVILEGED_POST_FIELDS: list[dict[str, object]] = [
    {"id": "1"},
    {"author_id": "1"},
    {"like_count": 99},
    {"share_count": 9},
    {"comment_count": 9},
    {"version": 7},
    {"created_at": "2020-01-01T00:00:00Z"},
    {"deleted_at": None},
    {"kind": "share"},
    {"counts": {"likes": 5}},
]


async def test_profile_and_registration_refuse_privileged_fields(
    client: httpx2.AsyncClient,
) -> None:
    user = await sign_up(client, "massy")
    before = (await client.get("/api/v1/me", headers=user.headers)).json()
    for extra in PRIVILEGED_USER_FIELDS:
        assert_problem(await client.patch("/api/v1/me", json=extra, headers=user.headers), 422)
        assert (await client.get("/api/v1/me", headers=user.headers)).json() == before, extra
        if "username" in extra or "email" in extra:
            continue  # those two are legitimate registration fields
        registration = {
            "username": "newbie",
            "email": "newbie@example.com",
            "password": DEFAULT_PASSWORD,
            **extra,
        }
        assert_problem(await client.post("/api/v1/accounts", json=registration), 422)
        assert (await client.get("/api/v1/users/newbie")).status_code == 404, extra


async def test_posts_refuse_privileged_fields(client: httpx2.AsyncClient) -> None:
    user = await sign_up(client, "poster")
    post = (await client.post("/api/v1/posts", json={"text": "hi"}, headers=user.headers)).json()
    for extra in PRIVILEGED_POST_FIELDS:
        created = await client.post(
            "/api/v1/posts", json={"text": "hi", **extra}, headers=user.headers
        )
        assert_problem(created, 422)
        edited = await client.patch(
            f"/api/v1/posts/{post['id']}", json={"text": "x", **extra}, headers=user.headers
        )
        assert_problem(edited, 422)
        after = (await client.get(f"/api/v1/posts/{post['id']}", headers=user.headers)).json()
        assert after == post, extra
    profile = (await client.get("/api/v1/users/poster")).json()
    assert profile["post_count"] == 1


async def test_comments_refuse_privileged_fields(client: httpx2.AsyncClient) -> None:
    user = await sign_up(client, "commenter")
    post = (await client.post("/api/v1/posts", json={"text": "hi"}, headers=user.headers)).json()
    for extra in (
        {"author_id": "1"},
        {"depth": 0},
        {"reply_count": 4},
        {"post_id": "1"},
        {"deleted": True},
        {"version": 3},
    ):
        created = await client.post(
            f"/api/v1/posts/{post['id']}/comments",
            json={"text": "c", **extra},
            headers=user.headers,
        )
        assert_problem(created, 422)
    listing = (await client.get(f"/api/v1/posts/{post['id']}/comments")).json()
    assert listing["data"] == []


async def test_admin_update_refuses_other_fields(
    client: httpx2.AsyncClient, container: Container
) -> None:
    await make_admin(container, "chief_admin")
    admin = await login(client, "chief_admin")
    await sign_up(client, "plain")
    for extra in ({"id": "1"}, {"email_verified": True}, {"username": "renamed"}):
        response = await client.patch(
            "/api/v1/admin/users/plain", json={"role": "moderator", **extra}, headers=admin.headers
        )
        assert_problem(response, 422)
    assert (await client.get("/api/v1/users/plain")).json()["role"] == "user"
