"""Authorization matrix for every post route that takes an id.

For each route and each post visibility, every actor gets exactly the intended status:

* owner, a stranger ("other"), a follower, a user the owner blocked ("blocked"), a user who
  blocked the owner ("blocker"), a moderator, and an anonymous caller;
* a post the actor may not see answers the very same 404 problem as an id that does not exist;
* a denied write changes nothing (checked through the owner's view of the post).

Each (visibility, actor) cell gets a freshly created post, so writes in one cell cannot leak
into the next.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

import httpx2
import pytest

from tests.support.api import SignedIn, assert_problem, login, make_admin, sign_up
from tidings.core.container import Container

ACTORS = ("owner", "other", "follower", "blocked", "blocker", "moderator", "anonymous")
VISIBILITIES = ("public", "followers", "private")
VOLATILE = ("request_id", "instance")


@dataclass(frozen=True)
class Route:
    name: str
    method: str
    suffix: str
    write: bool
    body: dict[str, Any] | None = None

    def path(self, post_id: str) -> str:
        return f"/api/v1/posts/{post_id}{self.suffix}"


ROUTES = {
    route.name: route
    for route in (
        Route("get", "GET", "", write=False),
        Route("patch", "PATCH", "", write=True, body={"text": "edited by someone"}),
        Route("delete", "DELETE", "", write=True),
        Route("like", "PUT", "/like", write=True),
        Route("unlike", "DELETE", "/like", write=True),
        Route("likers", "GET", "/likes", write=False),
        Route("share", "POST", "/share", write=True),
        Route("unshare", "DELETE", "/share", write=True),
    )
}


def can_see(actor: str, visibility: str) -> bool:
    """The intended visibility rule."""
    if actor in ("owner", "moderator"):
        return True
    if actor in ("blocked", "blocker"):
        return False  # a block hides posts in both directions
    if visibility == "public":
        return True
    if visibility == "followers":
        return actor == "follower"
    return False


def expected_status(route: str, actor: str, visibility: str) -> int:
    """The intended status of ``route`` for ``actor`` on a post of ``visibility``."""
    if ROUTES[route].write and actor == "anonymous":
        return 401
    if not can_see(actor, visibility):
        return 404
    if route in ("get", "likers", "like"):
        return 200
    if route == "patch":
        return 200 if actor == "owner" else 403
    if route == "delete":
        return 204 if actor in ("owner", "moderator") else 403
    if route == "share":
        return 201 if visibility == "public" else 409
    if route in ("unlike", "unshare"):
        return 204
    raise AssertionError(f"no rule for {route}")  # pragma: no cover


def test_expected_table_is_complete_and_sane() -> None:
    """The rule table itself: spot checks of the intended policy."""
    assert expected_status("get", "anonymous", "public") == 200
    assert expected_status("get", "anonymous", "followers") == 404
    assert expected_status("get", "follower", "followers") == 200
    assert expected_status("get", "follower", "private") == 404
    assert expected_status("get", "moderator", "private") == 200
    assert expected_status("patch", "moderator", "private") == 403
    assert expected_status("delete", "moderator", "private") == 204
    assert expected_status("delete", "other", "public") == 403
    assert expected_status("share", "follower", "followers") == 409
    assert expected_status("like", "anonymous", "private") == 401
    assert expected_status("like", "blocked", "public") == 404
    assert expected_status("likers", "blocker", "public") == 404
    cells = {(r, a, v) for r in ROUTES for a in ACTORS for v in VISIBILITIES}
    assert len(cells) == 8 * 7 * 3


@dataclass
class World:
    actors: dict[str, SignedIn | None]
    reference_404: dict[str, Any]

    def headers(self, actor: str) -> dict[str, str]:
        signed = self.actors[actor]
        return signed.headers if signed is not None else {}


def strip(problem: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in problem.items() if k not in VOLATILE}


def missing_id() -> str:
    """A well-formed id that no row has (ids here are ~2**57; this is a random 18-digit one)."""
    return str(10**17 + secrets.randbelow(8 * 10**17))


async def build_world(client: httpx2.AsyncClient, container: Container) -> World:
    owner = await sign_up(client, "owner")
    other = await sign_up(client, "other")
    follower = await sign_up(client, "follower")
    blocked = await sign_up(client, "blocked")
    blocker = await sign_up(client, "blocker")
    moderator = await sign_up(client, "mod_mia")
    await make_admin(container, "boss_ann")
    admin = await login(client, "boss_ann")
    promoted = await client.patch(
        "/api/v1/admin/users/mod_mia", json={"role": "moderator"}, headers=admin.headers
    )
    assert promoted.status_code == 200, promoted.text
    assert promoted.json()["role"] == "moderator"

    # The blocked user and the blocker both followed the owner before the block: the block must
    # remove those follows, or they would still see followers-only posts.
    for fan in (follower, blocked, blocker):
        followed = await client.put("/api/v1/users/owner/follow", headers=fan.headers)
        assert followed.status_code == 200, followed.text
    blocking = await client.put("/api/v1/users/blocked/block", headers=owner.headers)
    assert blocking.status_code == 200, blocking.text
    assert blocking.json()["blocking"] is True
    blocked_by = await client.put("/api/v1/users/owner/block", headers=blocker.headers)
    assert blocked_by.status_code == 200, blocked_by.text
    assert blocked_by.json()["blocking"] is True
    followers = (await client.get("/api/v1/users/owner/followers", headers=owner.headers)).json()
    assert [u["username"] for u in followers["data"]] == ["follower"], followers

    reference = await client.get(f"/api/v1/posts/{missing_id()}")
    body = assert_problem(reference, 404)
    return World(
        actors={
            "owner": owner,
            "other": other,
            "follower": follower,
            "blocked": blocked,
            "blocker": blocker,
            "moderator": moderator,
            "anonymous": None,
        },
        reference_404=strip(body),
    )


async def owner_view(client: httpx2.AsyncClient, world: World, post_id: str) -> httpx2.Response:
    return await client.get(f"/api/v1/posts/{post_id}", headers=world.headers("owner"))


async def seed(
    client: httpx2.AsyncClient, world: World, route: str, actor: str, visibility: str, pid: str
) -> dict[str, int]:
    """Put state in place that the route can act on; return the counts the post starts with."""
    likes = shares = 0
    if route in ("unlike", "likers"):
        liked = await client.put(f"/api/v1/posts/{pid}/like", headers=world.headers("owner"))
        assert liked.status_code == 200, liked.text
        likes = 1
        if route == "unlike" and actor not in ("owner", "anonymous") and can_see(actor, visibility):
            liked = await client.put(f"/api/v1/posts/{pid}/like", headers=world.headers(actor))
            assert liked.status_code == 200, liked.text
            likes = 2
    if route == "unshare" and visibility == "public":
        shared = await client.post(f"/api/v1/posts/{pid}/share", headers=world.headers("owner"))
        assert shared.status_code == 201, shared.text
        shares = 1
        if actor not in ("owner", "anonymous") and can_see(actor, visibility):
            shared = await client.post(f"/api/v1/posts/{pid}/share", headers=world.headers(actor))
            assert shared.status_code == 201, shared.text
            shares = 2
    return {"likes": likes, "shares": shares}


async def check_cell(
    client: httpx2.AsyncClient, world: World, route_name: str, actor: str, visibility: str
) -> list[str]:
    """Run one cell of the matrix; return the list of what went wrong (empty when right)."""
    route = ROUTES[route_name]
    where = f"{route.method} /posts/{{id}}{route.suffix} as {actor} on a {visibility} post"
    created = await client.post(
        "/api/v1/posts",
        json={"text": f"a {visibility} post", "visibility": visibility},
        headers=world.headers("owner"),
    )
    assert created.status_code == 201, created.text
    pid = created.json()["id"]
    before = await seed(client, world, route_name, actor, visibility, pid)

    want = expected_status(route_name, actor, visibility)
    response = await client.request(
        route.method, route.path(pid), json=route.body, headers=world.headers(actor)
    )
    if response.status_code != want:
        return [f"{where}: expected {want}, got {response.status_code}: {response.text[:300]}"]

    problems: list[str] = []
    if want >= 400:
        try:
            body = assert_problem(response, want)
        except AssertionError as exc:
            return [f"{where}: not a problem+json body: {exc}"]
        if want == 404:
            if strip(body) != world.reference_404:
                problems.append(
                    f"{where}: 404 differs from a missing post's: {strip(body)} "
                    f"!= {world.reference_404}"
                )
            if "etag" in response.headers:
                problems.append(f"{where}: a hidden post's 404 leaks an ETag")
            twin = await client.request(
                route.method,
                route.path(missing_id()),
                json=route.body,
                headers=world.headers(actor),
            )
            if twin.status_code != 404 or strip(twin.json()) != strip(body):
                problems.append(
                    f"{where}: 404 differs from the same route on a missing id: "
                    f"{twin.status_code} {twin.text[:200]}"
                )

    # The owner can always see the post (unless it was deleted): check the effect, or that a
    # refused write changed nothing.
    after = await owner_view(client, world, pid)
    if route_name == "delete" and want == 204:
        if after.status_code != 404:
            problems.append(
                f"{where}: the post is still readable after delete: {after.status_code}"
            )
        return problems
    if after.status_code != 200:
        return [*problems, f"{where}: owner cannot read the post afterwards: {after.text[:200]}"]
    post = after.json()
    counts = post["counts"]
    likes, shares = before["likes"], before["shares"]
    if want < 300:
        if route_name == "like":
            likes += 1
            if response.json() != {"liked": True, "likes": likes}:
                problems.append(f"{where}: like answered {response.json()}")
        elif route_name == "unlike":
            likes -= 1  # seed() made sure this actor had liked it
        elif route_name == "share":
            shares += 1
            state = response.json()
            if state["shared"] is not True or state["shares"] != shares:
                problems.append(f"{where}: share answered {state}")
        elif route_name == "unshare" and shares:
            shares -= 1  # seed() made sure this actor had shared it
        elif route_name == "patch":
            if post["text"] != "edited by someone" or post["version"] != 2:
                problems.append(f"{where}: the edit did not apply: {post}")
        elif route_name == "likers":
            names = [u["username"] for u in response.json()["data"]]
            if names != ["owner"]:
                problems.append(f"{where}: likers listed {names}, expected ['owner']")
        elif route_name == "get" and response.json()["id"] != pid:
            problems.append(f"{where}: read answered another post")
    unchanged = post["version"] == 1 and post["text"] == f"a {visibility} post"
    if (route_name != "patch" or want >= 300) and not unchanged:
        problems.append(f"{where}: the post changed: {post}")
    if counts["likes"] != likes or counts["shares"] != shares:
        problems.append(f"{where}: counts are {counts}, expected likes={likes} shares={shares}")
    return problems


@pytest.mark.parametrize("route", list(ROUTES))
async def test_post_route_authorization(
    client: httpx2.AsyncClient, container: Container, route: str
) -> None:
    """All 21 (visibility, actor) cells of one route; every mismatch is listed on failure."""
    world = await build_world(client, container)
    failures: list[str] = []
    for visibility in VISIBILITIES:
        for actor in ACTORS:
            failures += await check_cell(client, world, route, actor, visibility)
    assert not failures, "authorization matrix mismatches:\n" + "\n".join(failures)


async def test_hidden_deleted_and_missing_posts_answer_the_same_404(
    client: httpx2.AsyncClient, container: Container
) -> None:
    """A followers-only post (to a stranger), a private post (to a follower), a deleted post (to
    its owner) and the post of a suspended author (to anyone but moderators) all answer the very
    404 of an id that never existed, on both read routes and with If-None-Match."""
    world = await build_world(client, container)

    async def post_as(who: str, visibility: str) -> str:
        created = await client.post(
            "/api/v1/posts",
            json={"text": "hidden", "visibility": visibility},
            headers=world.headers(who),
        )
        assert created.status_code == 201, created.text
        return str(created.json()["id"])

    followers_post = await post_as("owner", "followers")
    private_post = await post_as("owner", "private")
    deleted_post = await post_as("owner", "public")
    assert (
        await client.delete(f"/api/v1/posts/{deleted_post}", headers=world.headers("owner"))
    ).status_code == 204
    suspended_post = await post_as("other", "public")
    admin = await login(client, "boss_ann")
    suspended = await client.patch(
        "/api/v1/admin/users/other", json={"suspended": True}, headers=admin.headers
    )
    assert suspended.status_code == 200, suspended.text

    cases = [
        ("followers-only, anonymous", followers_post, "anonymous", False),
        ("followers-only, blocked", followers_post, "blocked", False),
        ("private, follower", private_post, "follower", False),
        ("deleted, owner", deleted_post, "owner", False),
        ("deleted, moderator", deleted_post, "moderator", False),
        ("suspended author, anonymous", suspended_post, "anonymous", False),
        ("suspended author, follower", suspended_post, "follower", False),
        ("private, moderator", private_post, "moderator", True),
        ("suspended author, moderator", suspended_post, "moderator", True),
    ]
    for suffix in ("", "/likes"):
        reference = strip(
            assert_problem(await client.get(f"/api/v1/posts/{missing_id()}{suffix}"), 404)
        )
        for what, pid, actor, visible in cases:
            response = await client.get(
                f"/api/v1/posts/{pid}{suffix}",
                headers={**world.headers(actor), "If-None-Match": "*"},
            )
            if visible:
                assert response.status_code in (200, 304), (what, suffix, response.text)
                continue
            body = assert_problem(response, 404)
            assert strip(body) == reference, (what, suffix, body, reference)
            assert "etag" not in response.headers, (what, suffix)
