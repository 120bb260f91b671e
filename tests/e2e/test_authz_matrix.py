"""Authorization matrix over every route of the app.

``EXPECTED`` has one row per documented operation (method, path template) and one cell per
actor: ``anonymous``, ``user`` (the owner of the resource the request acts on, where ownership
applies), ``other`` (a different ordinary user), ``moderator`` and ``admin``. Each cell is the
exact status the actor gets. The intended rules:

* anonymous → 401 on a protected route (a problem with ``WWW-Authenticate: Bearer``);
* signed in but lacking the role → 403; admin routes are for admins only;
* not allowed to see a resource (another user's private post, its likes and comments, another
  user's notification) → 404, the same 404 as an id that does not exist;
* seeing it but not owning it → 403 for an edit; moderators (and admins) may delete others'
  posts and comments but never edit them;
* the refusal comes *before* existence is revealed: every route that takes an id is also called
  with ids that do not exist, and a 401/403 cell must answer the same 401/403 there.

Every cell is exercised against real resources set up for it (a post, a comment, a webhook and
one of its deliveries, a notification, a linked GitHub identity, a dead letter), with a valid
body, so a 422 cannot mask the answer. Denied responses must be problem+json, and a denied
write must change nothing (re-read as the owner or an admin). Reads use *private* resources
(hiding is tested); edits and deletes use *public* ones (ownership is tested).
``tests/e2e/test_post_authz_matrix.py`` covers the post-by-id routes in depth (every visibility,
followers, blocks).

``test_every_route_has_a_row`` fails when a route is added without a row here, naming it.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx2
import pyotp
import pytest
from fastapi import APIRouter, FastAPI
from sqlalchemy import select, update

from tests.conftest import make_settings
from tests.oidc.fixtures import (  # noqa: F401 (fixtures)
    APP_REDIRECT,
    github,
    github_server,
    provider_settings,
)
from tests.oidc.flows import Pkce, through_provider, to_provider
from tests.oidc.github_standin import GitHubStandIn, GitHubUser
from tests.support.api import (
    DEFAULT_PASSWORD,
    SignedIn,
    assert_problem,
    login,
    make_admin,
    sign_up,
)
from tests.unit.test_route_policies import policies, schema_routes
from tidings.accounts.models import User
from tidings.app import create_app
from tidings.auth.policy import ROLE_PERMISSIONS, Permission, Role
from tidings.core.container import Container
from tidings.core.db import utcnow
from tidings.core.ids import new_id
from tidings.events.models import DeadLetter
from tidings.notifications.models import NotificationGroup
from tidings.notifications.service import notify_system
from tidings.recovery.repository import TokenRepository
from tidings.settings import Settings
from tidings.webhooks.models import DeliveryStatus, WebhookDelivery

Key = tuple[str, str]
Row = dict[str, int]
ACTORS = ("anonymous", "user", "other", "moderator", "admin")
NAMES = {"user": "ursula", "other": "otto", "moderator": "mod_mia", "admin": "boss_ann"}
ROLES = {"user": Role.USER, "other": Role.USER, "moderator": Role.MODERATOR, "admin": Role.ADMIN}
HOOK_URL = "http://127.0.0.1:9/authz-hook"  # a closed loopback port: a redelivery fails fast
HOOK_EVENTS = ["comment.deleted"]
LINKED_GITHUB = GitHubUser.with_email(7001, "ursula-gh", "ursula.gh@example.com")
SIGN_IN_GITHUB = GitHubUser.with_email(7002, "walker", "walker@example.com")
NOTICE_TITLE = "authz matrix notice"
TAG = "authzmatrix"
NOBODY = "nobody_home"


def cells(anonymous: int, user: int, other: int, moderator: int, admin: int) -> Row:
    return {
        "anonymous": anonymous,
        "user": user,
        "other": other,
        "moderator": moderator,
        "admin": admin,
    }


def everyone(status: int) -> Row:
    """A public route: every actor, signed in or not, gets ``status``."""
    return cells(status, status, status, status, status)


def signed_in(status: int) -> Row:
    """Any signed-in user, acting on their own account."""
    return cells(401, status, status, status, status)


def admin_only(status: int) -> Row:
    return cells(401, 403, 403, 403, status)


# One row per documented operation. A route added to the app without a row fails
# test_every_route_has_a_row; a row's cells must agree with the route's declared policy
# (test_rows_agree_with_declared_policies).
EXPECTED: dict[Key, Row] = {
    # operations
    ("GET", "/livez"): everyone(200),
    ("GET", "/readyz"): everyone(200),
    # tokens and keys: holding the credentials (or the token) is the authorization
    ("POST", "/api/v1/auth/token"): everyone(200),
    ("POST", "/api/v1/auth/revoke"): everyone(200),
    ("GET", "/.well-known/jwks.json"): everyone(200),
    # sign-in providers: the browser flow is public and ignores any bearer token
    ("GET", "/api/v1/auth/providers"): everyone(200),
    ("GET", "/api/v1/auth/{provider}/authorize"): everyone(302),
    ("GET", "/api/v1/auth/{provider}/callback"): everyone(302),
    # your linked identities: only your own; the user has GitHub linked, the others have not
    ("GET", "/api/v1/me/identities"): signed_in(200),
    ("POST", "/api/v1/me/identities/{provider}"): signed_in(200),
    ("DELETE", "/api/v1/me/identities/{provider}"): cells(401, 204, 404, 404, 404),
    # confirming the holder through a provider: only through one linked to your own account
    ("POST", "/api/v1/me/reauthentication/{provider}"): cells(401, 200, 404, 404, 404),
    # ... and its code, redeemed only by the session that asked (the user's)
    ("POST", "/api/v1/me/reauthentication"): cells(401, 200, 422, 422, 422),
    # two-step sign-in: your own; turning someone's off is for admins
    ("GET", "/api/v1/me/mfa"): signed_in(200),
    ("POST", "/api/v1/me/mfa/totp"): signed_in(200),
    ("POST", "/api/v1/me/mfa/totp/confirm"): signed_in(200),
    ("DELETE", "/api/v1/me/mfa"): signed_in(204),
    ("POST", "/api/v1/me/mfa/recovery-codes"): signed_in(200),
    ("DELETE", "/api/v1/admin/users/{username}/mfa"): cells(401, 403, 403, 403, 204),
    # accounts
    ("POST", "/api/v1/accounts"): everyone(201),
    ("GET", "/api/v1/me"): signed_in(200),
    ("PATCH", "/api/v1/me"): signed_in(200),
    ("POST", "/api/v1/me/password"): signed_in(204),
    ("GET", "/api/v1/me/export"): signed_in(200),
    ("GET", "/api/v1/me/sessions"): signed_in(200),
    ("DELETE", "/api/v1/me/sessions"): signed_in(204),
    ("DELETE", "/api/v1/me/sessions/{session_id}"): signed_in(204),
    # account recovery: public routes (a token proves who it is for); the admin's address was
    # verified when the admin was made (409)
    ("POST", "/api/v1/auth/password-reset"): everyone(202),
    ("POST", "/api/v1/auth/password-reset/confirm"): everyone(204),
    ("POST", "/api/v1/me/email/verification"): cells(401, 202, 202, 202, 409),
    ("POST", "/api/v1/me/email/verify"): signed_in(204),
    ("POST", "/api/v1/me/email"): signed_in(202),
    ("POST", "/api/v1/me/email/confirm"): signed_in(204),
    ("GET", "/api/v1/users/{username}"): everyone(200),
    ("GET", "/api/v1/admin/users"): admin_only(200),
    # the target is the user: the user cell is an attempt to promote themselves
    ("PATCH", "/api/v1/admin/users/{username}"): admin_only(200),
    # each signed-in actor deletes their own account (a group of its own: it ends the world);
    # an admin cannot (409: another admin demotes them first)
    ("DELETE", "/api/v1/me"): cells(401, 202, 202, 202, 409),
    ("DELETE", "/api/v1/admin/users/{username}"): admin_only(202),
    # social graph, acting on the user: the user cell acts on themselves (422, not allowed)
    ("PUT", "/api/v1/users/{username}/follow"): cells(401, 422, 200, 200, 200),
    ("DELETE", "/api/v1/users/{username}/follow"): cells(401, 422, 204, 204, 204),
    ("PUT", "/api/v1/users/{username}/block"): cells(401, 422, 200, 200, 200),
    ("DELETE", "/api/v1/users/{username}/block"): cells(401, 422, 204, 204, 204),
    ("PUT", "/api/v1/users/{username}/mute"): cells(401, 422, 200, 200, 200),
    ("DELETE", "/api/v1/users/{username}/mute"): cells(401, 422, 204, 204, 204),
    # the accounts you block or mute: your own list only
    ("GET", "/api/v1/me/blocks"): signed_in(200),
    ("GET", "/api/v1/me/mutes"): signed_in(200),
    # follow requests to the user's locked account, by the other: answered only by the user
    # (the other answering their own request is a 422; the rest have none from the other)
    ("GET", "/api/v1/me/follow-requests"): signed_in(200),
    ("POST", "/api/v1/me/follow-requests/{username}/approve"): cells(401, 200, 422, 404, 404),
    ("DELETE", "/api/v1/me/follow-requests/{username}"): cells(401, 204, 422, 204, 204),
    ("GET", "/api/v1/users"): everyone(200),
    ("GET", "/api/v1/users/{username}/followers"): everyone(200),
    ("GET", "/api/v1/users/{username}/following"): everyone(200),
    # posts: reads, likes on the user's *private* post; edits, deletes, shares on a public one
    ("POST", "/api/v1/posts"): signed_in(201),
    ("GET", "/api/v1/posts/{post_id}"): cells(404, 200, 404, 200, 200),
    ("PATCH", "/api/v1/posts/{post_id}"): cells(401, 200, 403, 403, 403),
    ("DELETE", "/api/v1/posts/{post_id}"): cells(401, 204, 403, 204, 204),
    ("PUT", "/api/v1/posts/{post_id}/like"): cells(401, 200, 404, 200, 200),
    ("DELETE", "/api/v1/posts/{post_id}/like"): cells(401, 204, 404, 204, 204),
    ("GET", "/api/v1/posts/{post_id}/likes"): cells(404, 200, 404, 200, 200),
    ("PUT", "/api/v1/posts/{post_id}/bookmark"): cells(401, 200, 404, 200, 200),
    ("DELETE", "/api/v1/posts/{post_id}/bookmark"): cells(401, 204, 404, 204, 204),
    # bookmarks: each actor's own list only
    ("GET", "/api/v1/me/bookmarks"): signed_in(200),
    ("POST", "/api/v1/posts/{post_id}/share"): signed_in(201),
    ("DELETE", "/api/v1/posts/{post_id}/share"): signed_in(204),
    # comments: by the user, on the user's private post (reads) or public post (edits)
    ("POST", "/api/v1/posts/{post_id}/comments"): cells(401, 201, 404, 201, 201),
    ("GET", "/api/v1/posts/{post_id}/comments"): cells(404, 200, 404, 200, 200),
    ("GET", "/api/v1/comments/{comment_id}/replies"): cells(404, 200, 404, 200, 200),
    ("GET", "/api/v1/comments/{comment_id}"): cells(404, 200, 404, 200, 200),
    ("PATCH", "/api/v1/comments/{comment_id}"): cells(401, 200, 403, 403, 403),
    ("DELETE", "/api/v1/comments/{comment_id}"): cells(401, 204, 403, 204, 204),
    # timelines (the user's private post is listed only for the user and moderators)
    ("GET", "/api/v1/feed"): signed_in(200),
    ("GET", "/api/v1/users/{username}/posts"): everyone(200),
    ("GET", "/api/v1/tags/{tag}/posts"): everyone(200),
    # notifications: your own only; marking the user's notification read is a 404 for others
    ("GET", "/api/v1/notifications"): signed_in(200),
    ("GET", "/api/v1/notifications/unread-count"): signed_in(200),
    ("POST", "/api/v1/notifications/read"): cells(401, 200, 404, 404, 404),
    # webhooks: admins only
    ("POST", "/api/v1/webhooks"): admin_only(201),
    ("GET", "/api/v1/webhooks"): admin_only(200),
    ("GET", "/api/v1/webhooks/{webhook_id}"): admin_only(200),
    ("PATCH", "/api/v1/webhooks/{webhook_id}"): admin_only(200),
    ("DELETE", "/api/v1/webhooks/{webhook_id}"): admin_only(204),
    ("POST", "/api/v1/webhooks/{webhook_id}/rotate-secret"): admin_only(200),
    ("GET", "/api/v1/webhooks/{webhook_id}/deliveries"): admin_only(200),
    ("POST", "/api/v1/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver"): admin_only(202),
    # reports: anyone signed in reports what they see (the user cell reports their own post:
    # 422); moderators and admins work the queue
    ("POST", "/api/v1/reports"): cells(401, 422, 201, 201, 201),
    ("GET", "/api/v1/moderation/reports"): cells(401, 403, 403, 200, 200),
    ("GET", "/api/v1/moderation/summary"): cells(401, 403, 403, 200, 200),
    ("PATCH", "/api/v1/moderation/reports/{report_id}"): cells(401, 403, 403, 200, 200),
    # audit trail and dead letters: admins only
    ("GET", "/api/v1/admin/audit-events"): admin_only(200),
    ("GET", "/api/v1/admin/dead-letters"): admin_only(200),
    ("POST", "/api/v1/admin/dead-letters/{dead_letter_id}/replay"): admin_only(200),
}


# --- the matrix covers the app exactly -------------------------------------------------------


@pytest.fixture
def bare_app(tmp_path: Path) -> FastAPI:
    return create_app(make_settings(tmp_path, "sqlite+aiosqlite:///" + str(tmp_path / "x.db")))


def app_operations(app: FastAPI) -> set[Key]:
    return {(method, route.path) for route in schema_routes(app) for method in route.methods}


def matrix_gaps(app: FastAPI) -> list[str]:
    """What is wrong between the app's routes and ``EXPECTED``: one line per route."""
    routes = app_operations(app)
    missing = [f"no row in EXPECTED for {m} {p}" for m, p in sorted(routes - EXPECTED.keys())]
    stale = [
        f"EXPECTED row for {m} {p}: no such route" for m, p in sorted(EXPECTED.keys() - routes)
    ]
    incomplete = [
        f"EXPECTED row for {m} {p} lacks actors {sorted(set(ACTORS) - set(row))}"
        for (m, p), row in sorted(EXPECTED.items())
        if set(row) != set(ACTORS)
    ]
    return missing + stale + incomplete


def test_every_route_has_a_row(bare_app: FastAPI) -> None:
    gaps = matrix_gaps(bare_app)
    assert not gaps, "the authorization matrix does not match the routes:\n" + "\n".join(gaps)
    assert len(EXPECTED) >= 58
    assert app_operations(bare_app) == {
        (method.upper(), path)
        for path, item in bare_app.openapi()["paths"].items()
        for method in item
        if method in ("get", "put", "post", "delete", "patch")
    }


async def _unlisted() -> dict[str, str]:
    return {}


def test_a_route_without_a_row_is_named(bare_app: FastAPI) -> None:
    """The coverage check can fail, and says which route is missing."""
    extra = APIRouter(prefix="/api/v1")
    extra.add_api_route("/brand-new/{thing_id}", _unlisted, methods=["DELETE"])
    bare_app.include_router(extra)
    bare_app.openapi_schema = None
    assert matrix_gaps(bare_app) == ["no row in EXPECTED for DELETE /api/v1/brand-new/{thing_id}"]


def test_every_row_has_a_scenario() -> None:
    assert SCENARIOS.keys() == EXPECTED.keys()


def test_rows_agree_with_declared_policies(bare_app: FastAPI) -> None:
    """A public route never answers 401; a protected one answers 401 to anonymous callers and
    never 401 to a signed-in one; an admin route answers 403 to everyone but admins."""
    wrong: list[str] = []
    for route in schema_routes(bare_app):
        [policy] = policies(route.dependant)
        for method in route.methods:
            row = EXPECTED[(method, route.path)]
            where = f"{method} {route.path} ({policy})"
            if policy == "public":
                if 401 in row.values() or 403 in row.values():
                    wrong.append(f"{where}: a public route refuses someone: {row}")
                continue
            if row["anonymous"] != 401:
                wrong.append(f"{where}: anonymous must get 401, not {row['anonymous']}")
            if any(row[a] == 401 for a in ACTORS[1:]):
                wrong.append(f"{where}: a signed-in actor gets 401: {row}")
            if policy == "require:users:manage":
                if [row[a] for a in ("user", "other", "moderator")] != [403, 403, 403]:
                    wrong.append(f"{where}: only admins may pass: {row}")
                if row["admin"] >= 400:
                    wrong.append(f"{where}: admins are refused: {row}")
            elif row["moderator"] == 403 and row["user"] == 403:
                wrong.append(f"{where}: no ordinary role may pass: {row}")
    assert not wrong, "\n".join(wrong)


# --- the world the cells act in ------------------------------------------------------------------


@pytest.fixture(params=["db", "row-cache"])
def settings(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    database_url: str,
    backend: str,
    github: GitHubStandIn,  # noqa: F811
) -> Settings:
    """GitHub sign-in (a local stand-in) and loopback webhooks, so those routes can succeed;
    no embedded event relay: no cell needs events delivered (notifications, deliveries and dead
    letters are put in place directly), and the matrix runs much faster without it. On
    PostgreSQL the matrix runs again with the row cache in Redis (cached sign-in checks, posts
    and profiles read through the cache)."""
    cached: dict[str, object] = {}
    if request.param == "row-cache":
        if backend != "postgres":
            pytest.skip("the row-cache variant of the matrix runs on PostgreSQL")
        cached = {
            "row_cache": "redis",
            "redis_url": "redis://127.0.0.1:6379/0",
            "cache_key_prefix": f"test:authz:{secrets.token_hex(6)}:",
        }
    return make_settings(
        tmp_path / "data",
        database_url,
        relay_in_api=False,
        webhook_allowed_hosts=["127.0.0.1/32"],
        **provider_settings(github=github),
        **cached,
    )


@dataclass
class World:
    client: httpx2.AsyncClient
    container: Container
    github: GitHubStandIn
    signed: dict[str, SignedIn]
    passwords: dict[str, str] = field(default_factory=dict)

    def headers(self, actor: str) -> dict[str, str]:
        return {} if actor == "anonymous" else self.signed[actor].headers

    @property
    def user(self) -> SignedIn:
        return self.signed["user"]

    @property
    def admin(self) -> SignedIn:
        return self.signed["admin"]

    def name(self, actor: str) -> str:
        """The actor's username; anonymous callers act with the user's (credentials, target)."""
        return NAMES["user" if actor == "anonymous" else actor]

    async def call(self, actor: str, method: str, url: str, **kwargs: Any) -> httpx2.Response:
        return await self.client.request(method, url, headers=self.headers(actor), **kwargs)

    async def ok(self, actor: str, method: str, url: str, **kwargs: Any) -> Any:
        """A setup or check step that must succeed; its JSON body (or None)."""
        response = await self.call(actor, method, url, **kwargs)
        assert response.status_code < 300, f"{method} {url} as {actor}: {response.text}"
        return response.json() if response.content else None


async def build_world(
    client: httpx2.AsyncClient, container: Container, github_standin: GitHubStandIn
) -> World:
    signed = {actor: await sign_up(client, NAMES[actor]) for actor in ("user", "other")}
    signed["moderator"] = await sign_up(client, NAMES["moderator"])
    await make_admin(container, NAMES["admin"])
    signed["admin"] = await login(client, NAMES["admin"])
    world = World(client, container, github_standin, signed)
    world.passwords = {actor: DEFAULT_PASSWORD for actor in NAMES}
    promoted = await world.ok(
        "admin", "PATCH", f"/api/v1/admin/users/{NAMES['moderator']}", json={"role": "moderator"}
    )
    assert promoted["role"] == "moderator"
    return world


def missing_id() -> str:
    """A well-formed id that no row has."""
    return str(10**17 + secrets.randbelow(8 * 10**17))


Verify = Callable[[httpx2.Response], Awaitable[list[str]]]


@dataclass
class Call:
    """The request one cell makes, what to check afterwards, and the same request on ids that
    do not exist (``missing_url``; None for routes without an id)."""

    method: str
    url: str
    json: Any = None
    data: dict[str, str] | None = None
    params: dict[str, str] | None = None
    verify: Verify | None = None
    missing_url: str | None = None

    def kwargs(self) -> dict[str, Any]:
        found: dict[str, Any] = {}
        if self.json is not None:
            found["json"] = self.json
        if self.data is not None:
            found["data"] = self.data
        if self.params is not None:
            found["params"] = self.params
        return found


Make = Callable[[World, str], Awaitable[Call]]


@dataclass(frozen=True)
class Scenario:
    group: str
    make: Make


SCENARIOS: dict[Key, Scenario] = {}


def scenario(method: str, path: str, group: str) -> Callable[[Make], Make]:
    def register(make: Make) -> Make:
        assert (method, path) not in SCENARIOS, (method, path)
        SCENARIOS[(method, path)] = Scenario(group, make)
        return make

    return register


def check(condition: bool, message: str) -> list[str]:
    return [] if condition else [message]


# --- shared resources ----------------------------------------------------------------------------


async def post_by(w: World, actor: str, visibility: str, text: str = "a post") -> str:
    body = await w.ok(actor, "POST", "/api/v1/posts", json={"text": text, "visibility": visibility})
    return str(body["id"])


async def owner_post(w: World, post_id: str) -> httpx2.Response:
    return await w.call("user", "GET", f"/api/v1/posts/{post_id}")


async def counts(w: World, post_id: str) -> dict[str, int]:
    post = await w.ok("user", "GET", f"/api/v1/posts/{post_id}")
    found: dict[str, int] = post["counts"]
    return found


async def comment_by(w: World, actor: str, post_id: str, parent: str | None = None) -> str:
    body: dict[str, Any] = {"text": "a comment"}
    if parent is not None:
        body["parent_comment_id"] = parent
    created = await w.ok(actor, "POST", f"/api/v1/posts/{post_id}/comments", json=body)
    return str(created["id"])


async def followers_of_user(w: World) -> set[str]:
    page = await w.ok("user", "GET", f"/api/v1/users/{NAMES['user']}/followers")
    return {u["username"] for u in page["data"]}


async def identities(w: World, actor: str) -> list[str]:
    body = await w.ok(actor, "GET", "/api/v1/me/identities")
    return [identity["provider"] for identity in body["data"]]


async def link_github(w: World) -> None:
    """Link the user's account to a GitHub identity through the stand-in, as a browser would."""
    w.github.signed_in_as = LINKED_GITHUB
    started = await w.ok(
        "user",
        "POST",
        "/api/v1/me/identities/github",
        json={"redirect_uri": APP_REDIRECT, "state": "link-1", "password": w.passwords["user"]},
    )
    opened = await w.client.get(started["authorization_url"])
    assert opened.status_code == 302, opened.text
    back = await w.client.get(await through_provider(opened.headers["location"]))
    assert back.status_code == 302, back.text
    assert "error" not in back.headers["location"], back.headers["location"]


async def webhook(w: World) -> dict[str, Any]:
    created: dict[str, Any] = await w.ok(
        "admin",
        "POST",
        "/api/v1/webhooks",
        json={"url": HOOK_URL, "event_types": HOOK_EVENTS, "description": "original"},
    )
    return created


async def add_failed_delivery(w: World, webhook_id: str) -> str:
    delivery = WebhookDelivery(
        subscription_id=int(webhook_id),
        event_id=new_id(),
        event_type=HOOK_EVENTS[0],
        message_id=f"msg_{secrets.token_hex(8)}",
        payload="{}",
        status=DeliveryStatus.DEAD.value,
        attempts=5,
        next_attempt_at=None,
        last_error="connection refused",
    )
    async with w.container.db.unit_of_work(write=True) as session:
        session.add(delivery)
        await session.flush()
        return str(delivery.id)


async def add_dead_letter(w: World) -> str:
    letter = DeadLetter(
        event_id=new_id(),
        consumer="authz-matrix",
        event_type="user.followed",
        error="downstream is down",
        attempts=3,
    )
    async with w.container.db.unit_of_work(write=True) as session:
        session.add(letter)
        await session.flush()
        return str(letter.id)


async def add_notice_for_user(w: World) -> str:
    """An unread system notification for the user; its id."""
    key_before = new_id()
    async with w.container.db.unit_of_work(write=True) as session:
        await notify_system(session, int(w.user.user_id), title=NOTICE_TITLE, body="hello")
    async with w.container.db.unit_of_work(write=False) as session:
        notice_id = await session.scalar(
            select(NotificationGroup.id)
            .where(NotificationGroup.recipient_id == int(w.user.user_id))
            .where(NotificationGroup.sort_key > key_before)
            .order_by(NotificationGroup.sort_key.desc())
            .limit(1)
        )
    assert notice_id is not None
    return str(notice_id)


async def unread_of_user(w: World) -> int:
    body = await w.ok("user", "GET", "/api/v1/notifications/unread-count")
    count: int = body["count"]
    return count


# --- operations, tokens, providers ------------------------------------------------------------


@scenario("GET", "/livez", "accounts")
async def _livez(w: World, actor: str) -> Call:
    return Call("GET", "/livez")


@scenario("GET", "/readyz", "accounts")
async def _readyz(w: World, actor: str) -> Call:
    return Call("GET", "/readyz")


@scenario("POST", "/api/v1/auth/token", "accounts")
async def _token(w: World, actor: str) -> Call:
    async def verify(response: httpx2.Response) -> list[str]:
        return check("access_token" in response.json(), f"no access token: {response.text}")

    data = {"grant_type": "password", "username": w.name(actor), "password": DEFAULT_PASSWORD}
    return Call("POST", "/api/v1/auth/token", data=data, verify=verify)


@scenario("POST", "/api/v1/auth/revoke", "accounts")
async def _revoke(w: World, actor: str) -> Call:
    """Anyone holding a token may revoke it (RFC 7009): a fresh session of the user's."""
    fresh = await login(w.client, NAMES["user"])

    async def verify(response: httpx2.Response) -> list[str]:
        refresh = await w.client.post(
            "/api/v1/auth/token",
            data={"grant_type": "refresh_token", "refresh_token": fresh.refresh_token},
        )
        return check(refresh.status_code == 400, f"revoked session refreshes: {refresh.text}")

    return Call("POST", "/api/v1/auth/revoke", data={"token": fresh.refresh_token}, verify=verify)


@scenario("GET", "/.well-known/jwks.json", "accounts")
async def _jwks(w: World, actor: str) -> Call:
    return Call("GET", "/.well-known/jwks.json")


@scenario("GET", "/api/v1/auth/providers", "accounts")
async def _providers(w: World, actor: str) -> Call:
    async def verify(response: httpx2.Response) -> list[str]:
        names = [p["name"] for p in response.json()["data"]]
        return check(names == ["github"], f"providers listed: {names}")

    return Call("GET", "/api/v1/auth/providers", verify=verify)


@scenario("GET", "/api/v1/auth/{provider}/authorize", "accounts")
async def _authorize(w: World, actor: str) -> Call:
    pkce = Pkce.new()
    params = {
        "redirect_uri": APP_REDIRECT,
        "state": "app-state",
        "code_challenge": pkce.challenge,
        "code_challenge_method": "S256",
    }

    async def verify(response: httpx2.Response) -> list[str]:
        location = response.headers.get("location", "")
        return check(location.startswith(w.github.base_url), f"redirected to {location}")

    return Call(
        "GET",
        "/api/v1/auth/github/authorize",
        params=params,
        verify=verify,
        missing_url="/api/v1/auth/nosuch/authorize",
    )


@scenario("GET", "/api/v1/auth/{provider}/callback", "accounts")
async def _callback(w: World, actor: str) -> Call:
    """A whole sign-in up to the callback; a bearer token sent along changes nothing."""
    w.github.signed_in_as = SIGN_IN_GITHUB
    provider_url = await to_provider(w.client, "github", pkce=Pkce.new())
    callback = await through_provider(provider_url)

    async def verify(response: httpx2.Response) -> list[str]:
        location = response.headers.get("location", "")
        return check(
            location.startswith(APP_REDIRECT) and "code=" in location,
            f"callback sent the browser to {location}",
        )

    return Call("GET", callback, verify=verify, missing_url="/api/v1/auth/nosuch/callback")


# --- linked identities -----------------------------------------------------------------------


@scenario("GET", "/api/v1/me/identities", "accounts")
async def _list_identities(w: World, actor: str) -> Call:
    if "github" not in await identities(w, "user"):
        await link_github(w)

    async def verify(response: httpx2.Response) -> list[str]:
        if response.status_code >= 300:
            return []
        listed = [i["provider"] for i in response.json()["data"]]
        want = ["github"] if actor == "user" else []
        return check(listed == want, f"{actor} sees identities {listed}, expected {want}")

    return Call("GET", "/api/v1/me/identities", verify=verify)


@scenario("POST", "/api/v1/me/identities/{provider}", "accounts")
async def _start_link(w: World, actor: str) -> Call:
    """Everyone starts linking GitHub to their own account (the user's is unlinked first: a
    second GitHub identity is a 409)."""
    if "github" in await identities(w, "user"):
        proof = {"password": w.passwords["user"]}
        await w.ok("user", "DELETE", "/api/v1/me/identities/github", json=proof)
    password = w.passwords["user" if actor == "anonymous" else actor]

    async def verify(response: httpx2.Response) -> list[str]:
        if response.status_code >= 300:
            return []
        url = response.json().get("authorization_url", "")
        return check("/api/v1/auth/github/authorize" in url, f"link started at {url}")

    return Call(
        "POST",
        "/api/v1/me/identities/github",
        json={"redirect_uri": APP_REDIRECT, "state": "link-2", "password": password},
        verify=verify,
        missing_url="/api/v1/me/identities/nosuch",
    )


@scenario("DELETE", "/api/v1/me/identities/{provider}", "accounts")
async def _unlink(w: World, actor: str) -> Call:
    if "github" not in await identities(w, "user"):
        await link_github(w)

    async def verify(response: httpx2.Response) -> list[str]:
        left = await identities(w, "user")
        want = [] if actor == "user" else ["github"]
        return check(left == want, f"after {actor}'s unlink the user has {left}")

    password = w.passwords["user" if actor == "anonymous" else actor]
    return Call(
        "DELETE",
        "/api/v1/me/identities/github",
        json={"password": password},
        verify=verify,
        missing_url="/api/v1/me/identities/nosuch",
    )


@scenario("POST", "/api/v1/me/reauthentication/{provider}", "accounts")
async def _start_reauth(w: World, actor: str) -> Call:
    if "github" not in await identities(w, "user"):
        await link_github(w)

    async def verify(response: httpx2.Response) -> list[str]:
        if response.status_code >= 300:
            return []
        url = response.json().get("authorization_url", "")
        return check("/api/v1/auth/github/authorize" in url, f"confirmation started at {url}")

    return Call(
        "POST",
        "/api/v1/me/reauthentication/github",
        json={
            "redirect_uri": APP_REDIRECT,
            "state": "reauth-1",
            "code_challenge": Pkce.new().challenge,
        },
        verify=verify,
        missing_url="/api/v1/me/reauthentication/nosuch",
    )


@scenario("POST", "/api/v1/me/reauthentication", "accounts")
async def _finish_reauth(w: World, actor: str) -> Call:
    """The user's session confirms it is them through GitHub; the code its browser comes back
    with, and the verifier, are sent by each actor's own session."""
    if "github" not in await identities(w, "user"):
        await link_github(w)
    w.github.signed_in_as = LINKED_GITHUB
    pkce = Pkce.new()
    body = {"redirect_uri": APP_REDIRECT, "state": "reauth-2", "code_challenge": pkce.challenge}
    started = await w.ok("user", "POST", "/api/v1/me/reauthentication/github", json=body)
    opened = await w.client.get(started["authorization_url"])
    assert opened.status_code == 302, opened.text
    back = await w.client.get(await through_provider(opened.headers["location"]))
    assert back.status_code == 302, back.text
    code = dict(parse_qsl(urlsplit(back.headers["location"]).query))["code"]

    async def verify(response: httpx2.Response) -> list[str]:
        if response.status_code >= 300:
            return []
        return check(response.json()["provider"] == "github", f"confirmed {response.json()}")

    redeem = {"code": code, "code_verifier": pkce.verifier}
    return Call("POST", "/api/v1/me/reauthentication", json=redeem, verify=verify)


# --- two-step sign-in --------------------------------------------------------------------------


async def mfa_pending(w: World, actor: str) -> str:
    """Start turning two-step sign-in on for ``actor``; the authenticator's secret."""
    body = {"password": w.passwords[actor]}
    return str((await w.ok(actor, "POST", "/api/v1/me/mfa/totp", json=body))["secret"])


async def mfa_on(w: World, actor: str) -> list[str]:
    """Turn it on for ``actor``; the recovery codes."""
    code = pyotp.TOTP(await mfa_pending(w, actor)).now()
    body = await w.ok(actor, "POST", "/api/v1/me/mfa/totp/confirm", json={"code": code})
    return list(body["recovery_codes"])


async def mfa_enabled(w: World, actor: str) -> bool:
    return bool((await w.ok(actor, "GET", "/api/v1/me/mfa"))["enabled"])


@scenario("GET", "/api/v1/me/mfa", "accounts")
async def _mfa_status(w: World, actor: str) -> Call:
    async def verify(response: httpx2.Response) -> list[str]:
        if response.status_code >= 300:
            return []
        return check(response.json()["enabled"] is False, f"{actor}: {response.json()}")

    return Call("GET", "/api/v1/me/mfa", verify=verify)


@scenario("POST", "/api/v1/me/mfa/totp", "accounts")
async def _mfa_start(w: World, actor: str) -> Call:
    """Starting changes nothing at sign-in yet (it stays off)."""
    password = w.passwords["user" if actor == "anonymous" else actor]

    async def verify(response: httpx2.Response) -> list[str]:
        owner = "user" if actor == "anonymous" else actor
        off = not await mfa_enabled(w, owner)
        if response.status_code >= 300:
            return check(off, f"a refused start turned {owner}'s two-step sign-in on")
        uri = response.json()["otpauth_uri"]
        return check(off and uri.startswith("otpauth://totp/"), f"{actor} started: {uri}")

    return Call("POST", "/api/v1/me/mfa/totp", json={"password": password}, verify=verify)


@scenario("POST", "/api/v1/me/mfa/totp/confirm", "accounts")
async def _mfa_confirm(w: World, actor: str) -> Call:
    """Each actor confirms their own pending authenticator (anonymous: the user's), and turns
    it off again afterwards with a recovery code."""
    owner = "user" if actor == "anonymous" else actor
    code = pyotp.TOTP(await mfa_pending(w, owner)).now()

    async def verify(response: httpx2.Response) -> list[str]:
        on = await mfa_enabled(w, owner)
        if response.status_code >= 300:
            return check(not on, f"a refused confirmation turned {owner}'s on")
        codes = response.json()["recovery_codes"]
        off = {"password": w.passwords[owner], "code": codes[0]}
        await w.ok(owner, "DELETE", "/api/v1/me/mfa", json=off)
        return check(on and len(codes) == 10, f"{actor} confirmed: on={on}, {len(codes)} codes")

    return Call("POST", "/api/v1/me/mfa/totp/confirm", json={"code": code}, verify=verify)


@scenario("DELETE", "/api/v1/me/mfa", "accounts")
async def _mfa_off(w: World, actor: str) -> Call:
    owner = "user" if actor == "anonymous" else actor
    codes = await mfa_on(w, owner)

    async def verify(response: httpx2.Response) -> list[str]:
        on = await mfa_enabled(w, owner)
        if on:  # refused: leave the world as it was
            body = {"password": w.passwords[owner], "code": codes[1]}
            await w.ok(owner, "DELETE", "/api/v1/me/mfa", json=body)
        if response.status_code >= 300:
            return check(on, f"a refused turn-off turned {owner}'s off")
        return check(not on, f"{actor}'s turn-off left it on")

    body = {"password": w.passwords[owner], "code": codes[0]}
    return Call("DELETE", "/api/v1/me/mfa", json=body, verify=verify)


@scenario("POST", "/api/v1/me/mfa/recovery-codes", "accounts")
async def _mfa_new_codes(w: World, actor: str) -> Call:
    """Each actor replaces their own recovery codes (anonymous: the user's), then turns it off
    again with one of the new ones."""
    owner = "user" if actor == "anonymous" else actor
    codes = await mfa_on(w, owner)

    async def verify(response: httpx2.Response) -> list[str]:
        fresh = response.json().get("recovery_codes", []) if response.status_code < 300 else []
        last = fresh[0] if fresh else codes[1]
        body = {"password": w.passwords[owner], "code": last}
        await w.ok(owner, "DELETE", "/api/v1/me/mfa", json=body)
        if response.status_code >= 300:
            return []
        return check(len(fresh) == 10 and not set(fresh) & set(codes), f"{actor}: {fresh}")

    body = {"password": w.passwords[owner], "code": codes[0]}
    return Call("POST", "/api/v1/me/mfa/recovery-codes", json=body, verify=verify)


@scenario("DELETE", "/api/v1/admin/users/{username}/mfa", "accounts")
async def _admin_mfa_off(w: World, actor: str) -> Call:
    """The user has it on; only an admin turns it off, with the admin's own password (then
    the user turns it back off)."""
    codes = await mfa_on(w, "user")

    async def verify(response: httpx2.Response) -> list[str]:
        on = await mfa_enabled(w, "user")
        if on:
            body = {"password": w.passwords["user"], "code": codes[0]}
            await w.ok("user", "DELETE", "/api/v1/me/mfa", json=body)
        if response.status_code >= 300:
            return check(on, f"{actor}'s refused turn-off turned the user's off")
        return check(not on, "the admin's turn-off left the user's on")

    proof = {"password": w.passwords["user" if actor == "anonymous" else actor]}
    return Call(
        "DELETE",
        f"/api/v1/admin/users/{NAMES['user']}/mfa",
        json=proof,
        verify=verify,
        missing_url=f"/api/v1/admin/users/{NOBODY}/mfa",
    )


# --- accounts ----------------------------------------------------------------------------------


@scenario("POST", "/api/v1/accounts", "accounts")
async def _register(w: World, actor: str) -> Call:
    username = f"fresh_{actor}"

    async def verify(response: httpx2.Response) -> list[str]:
        body = response.json()
        return check(body["username"] == username and body["role"] == "user", f"registered {body}")

    body = {"username": username, "email": f"{username}@example.com", "password": "tr0ub4dor&3x"}
    return Call("POST", "/api/v1/accounts", json=body, verify=verify)


@scenario("GET", "/api/v1/me", "accounts")
async def _me(w: World, actor: str) -> Call:
    async def verify(response: httpx2.Response) -> list[str]:
        if response.status_code >= 300:
            return []
        got = response.json()["username"]
        return check(got == w.name(actor), f"{actor} read the account of {got}")

    return Call("GET", "/api/v1/me", verify=verify)


@scenario("PATCH", "/api/v1/me", "accounts")
async def _update_me(w: World, actor: str) -> Call:
    before = await w.ok("user", "GET", "/api/v1/me")

    async def verify(response: httpx2.Response) -> list[str]:
        if response.status_code >= 300:
            after = await w.ok("user", "GET", "/api/v1/me")
            return check(after == before, f"a refused profile edit changed {after}")
        body = response.json()
        return check(
            body["username"] == w.name(actor) and body["display_name"] == f"{actor} renamed",
            f"{actor}'s edit answered {body}",
        )

    return Call("PATCH", "/api/v1/me", json={"display_name": f"{actor} renamed"}, verify=verify)


@scenario("POST", "/api/v1/me/password", "accounts")
async def _change_password(w: World, actor: str) -> Call:
    name = w.name(actor)
    current = w.passwords["user" if actor == "anonymous" else actor]
    new = f"a-new-staple-for-{actor}-42"

    async def verify(response: httpx2.Response) -> list[str]:
        if response.status_code >= 300:
            await login(w.client, name, current)  # still the old password
            return []
        stale = await w.call(actor, "GET", "/api/v1/me")
        w.signed[actor] = await login(w.client, name, new)
        w.passwords[actor] = new
        return check(stale.status_code == 401, f"old session survives: {stale.status_code}")

    body = {"current_password": current, "new_password": new}
    return Call("POST", "/api/v1/me/password", json=body, verify=verify)


@scenario("GET", "/api/v1/me/export", "accounts")
async def _export(w: World, actor: str) -> Call:
    async def verify(response: httpx2.Response) -> list[str]:
        if response.status_code >= 300:
            return []
        name = response.json()["account"]["username"]
        return check(name == w.name(actor), f"{actor} exported {name}'s account")

    return Call("GET", "/api/v1/me/export", verify=verify)


@scenario("GET", "/api/v1/me/sessions", "sessions")
async def _my_sessions(w: World, actor: str) -> Call:
    async def verify(response: httpx2.Response) -> list[str]:
        if response.status_code >= 300:
            return []
        current = [s for s in response.json()["data"] if s["current"]]
        return check(len(current) == 1, f"{actor}'s current sessions: {current}")

    return Call("GET", "/api/v1/me/sessions", verify=verify)


@scenario("DELETE", "/api/v1/me/sessions", "sessions")
async def _end_other_sessions(w: World, actor: str) -> Call:
    """Each actor signs out its other sessions: a second sign-in of its own stops working."""
    name = w.name(actor)
    second = await login(w.client, name, w.passwords["user" if actor == "anonymous" else actor])

    async def verify(response: httpx2.Response) -> list[str]:
        me = await w.client.get("/api/v1/me", headers=second.headers)
        if response.status_code >= 300:
            return check(me.status_code == 200, f"refused, yet the session ended: {me.text}")
        return check(me.status_code == 401, f"the other session still works: {me.text}")

    body = {"password": w.passwords["user" if actor == "anonymous" else actor]}
    return Call("DELETE", "/api/v1/me/sessions", json=body, verify=verify)


@scenario("DELETE", "/api/v1/me/sessions/{session_id}", "sessions")
async def _end_session(w: World, actor: str) -> Call:
    """Each actor ends a second sign-in of its own (anonymous: the user's, without a token)."""
    name = w.name(actor)
    password = w.passwords["user" if actor == "anonymous" else actor]
    second = await login(w.client, name, password)
    listed = await w.client.get("/api/v1/me/sessions", headers=second.headers)
    [session_id] = [s["id"] for s in listed.json()["data"] if s["current"]]

    async def verify(response: httpx2.Response) -> list[str]:
        me = await w.client.get("/api/v1/me", headers=second.headers)
        if response.status_code >= 300:
            return check(me.status_code == 200, f"refused, yet the session ended: {me.text}")
        return check(me.status_code == 401, f"the ended session still works: {me.text}")

    return Call(
        "DELETE",
        f"/api/v1/me/sessions/{session_id}",
        json={"password": password},
        verify=verify,
        missing_url=f"/api/v1/me/sessions/{missing_id()}",
    )


async def _throwaway_token(w: World, purpose: str) -> tuple[str, str]:
    """A fresh account and a token for it, issued as the mail would carry it: (name, token)."""
    name = f"rc_{secrets.token_hex(4)}"
    account = await sign_up(w.client, name)
    async with w.container.db.unit_of_work(write=True) as session:
        token = await TokenRepository(session).issue(
            int(account.user_id), purpose, f"{name}@example.com", utcnow() + timedelta(minutes=5)
        )
    return name, token


@scenario("POST", "/api/v1/auth/password-reset", "recovery")
async def _password_reset(w: World, actor: str) -> Call:
    return Call("POST", "/api/v1/auth/password-reset", json={"email": "user@example.com"})


@scenario("POST", "/api/v1/auth/password-reset/confirm", "recovery")
async def _password_reset_confirm(w: World, actor: str) -> Call:
    name, token = await _throwaway_token(w, "password_reset")
    new = f"reset-staple-{secrets.token_hex(4)}"

    async def verify(response: httpx2.Response) -> list[str]:
        await login(w.client, name, new)  # asserts the new password signs in
        return []

    body = {"token": token, "new_password": new}
    return Call("POST", "/api/v1/auth/password-reset/confirm", json=body, verify=verify)


@scenario("POST", "/api/v1/me/email/verification", "recovery")
async def _email_verification(w: World, actor: str) -> Call:
    return Call("POST", "/api/v1/me/email/verification")


@scenario("POST", "/api/v1/me/email/verify", "recovery")
async def _email_verify(w: World, actor: str) -> Call:
    """Each actor uses a verification link of its own account (as the mail would carry it)."""
    me = w.signed["user" if actor == "anonymous" else actor]
    uid = int(me.user_id)
    async with w.container.db.unit_of_work(write=True) as session:
        user = await session.get(User, uid)
        assert user is not None
        email, before = user.email, user.email_verified
        await session.execute(update(User).where(User.id == uid).values(email_verified=False))
        token = await TokenRepository(session).issue(
            uid, "verify_email", email, utcnow() + timedelta(minutes=5)
        )

    async def verify(response: httpx2.Response) -> list[str]:
        verified = (await w.client.get("/api/v1/me", headers=me.headers)).json()["email_verified"]
        async with w.container.db.unit_of_work(write=True) as session:  # as it was
            await session.execute(update(User).where(User.id == uid).values(email_verified=before))
        if actor == "anonymous":
            return check(verified is False, "verified without signing in")
        return check(verified is True, f"{actor} is not verified")

    return Call("POST", "/api/v1/me/email/verify", json={"token": token}, verify=verify)


@scenario("POST", "/api/v1/me/email", "recovery")
async def _email_change(w: World, actor: str) -> Call:
    """Each actor asks to move to a new address: a link goes there, the address stays."""
    name = w.name(actor)
    body = {
        "email": f"{name}.moved@example.org",
        "password": w.passwords["user" if actor == "anonymous" else actor],
    }

    async def verify(response: httpx2.Response) -> list[str]:
        if actor == "anonymous":
            return []
        me = (await w.call(actor, "GET", "/api/v1/me")).json()
        return check(me["email"] != body["email"], f"changed before the link was used: {me}")

    return Call("POST", "/api/v1/me/email", json=body, verify=verify)


@scenario("POST", "/api/v1/me/email/confirm", "recovery")
async def _email_change_confirm(w: World, actor: str) -> Call:
    """Each actor uses a change link of its own account (as the mail would carry it)."""
    me = w.signed.get("user" if actor == "anonymous" else actor)
    assert me is not None
    moved = f"{w.name(actor)}.{secrets.token_hex(3)}@example.org"
    async with w.container.db.unit_of_work(write=True) as session:
        token = await TokenRepository(session).issue(
            int(me.user_id), "change_email", moved, utcnow() + timedelta(minutes=5)
        )

    async def verify(response: httpx2.Response) -> list[str]:
        if actor == "anonymous":
            return []
        email = (await w.call(actor, "GET", "/api/v1/me")).json()["email"]
        return check(email == moved, f"{actor} did not move: {email}")

    return Call("POST", "/api/v1/me/email/confirm", json={"token": token}, verify=verify)


@scenario("GET", "/api/v1/users/{username}", "accounts")
async def _profile(w: World, actor: str) -> Call:
    async def verify(response: httpx2.Response) -> list[str]:
        body = response.json()
        return check("email" not in body, f"a public profile shows the email: {body}")

    return Call(
        "GET",
        f"/api/v1/users/{NAMES['user']}",
        verify=verify,
        missing_url=f"/api/v1/users/{NOBODY}",
    )


@scenario("GET", "/api/v1/admin/users", "accounts")
async def _admin_users(w: World, actor: str) -> Call:
    return Call("GET", "/api/v1/admin/users")


@scenario("PATCH", "/api/v1/admin/users/{username}", "accounts")
async def _admin_update(w: World, actor: str) -> Call:
    """Non-admins try to make the user an admin (the user: themselves); an admin demotes the
    user to moderator and back."""
    role = "moderator" if actor == "admin" else "admin"

    async def verify(response: httpx2.Response) -> list[str]:
        after = (await w.ok("user", "GET", "/api/v1/me"))["role"]
        if response.status_code >= 300:
            return check(after == "user", f"a refused role change made the user {after}")
        await w.ok("admin", "PATCH", f"/api/v1/admin/users/{NAMES['user']}", json={"role": "user"})
        return check(after == "moderator", f"the admin's change made the user {after}")

    return Call(
        "PATCH",
        f"/api/v1/admin/users/{NAMES['user']}",
        json={"role": role},
        verify=verify,
        missing_url=f"/api/v1/admin/users/{NOBODY}",
    )


@scenario("DELETE", "/api/v1/me", "account-deletion")
async def _delete_me(w: World, actor: str) -> Call:
    """Each actor deletes their own account, proving it with their password (anonymous: the
    user's password, without a token)."""
    password = w.passwords["user" if actor == "anonymous" else actor]

    async def verify(response: httpx2.Response) -> list[str]:
        me = await w.call(actor, "GET", "/api/v1/me")
        if response.status_code >= 300:
            return check(actor == "anonymous" or me.status_code == 200, f"refused, yet {me.text}")
        return check(me.status_code == 401, f"a deleted account still reads /me: {me.text}")

    return Call("DELETE", "/api/v1/me", json={"password": password}, verify=verify)


@scenario("DELETE", "/api/v1/admin/users/{username}", "account-deletion-by-admin")
async def _admin_delete(w: World, actor: str) -> Call:
    """Each actor tries to delete a fresh account of its own; only the admin may."""
    target = f"gone_{secrets.token_hex(4)}"
    await sign_up(w.client, target)

    async def verify(response: httpx2.Response) -> list[str]:
        profile = await w.call("admin", "GET", f"/api/v1/users/{target}")
        if response.status_code >= 300:
            return check(profile.status_code == 200, f"a refused deletion: {profile.text}")
        return check(profile.status_code == 404, f"deleted, yet the profile: {profile.text}")

    return Call(
        "DELETE",
        f"/api/v1/admin/users/{target}",
        verify=verify,
        missing_url=f"/api/v1/admin/users/{NOBODY}",
    )


# --- social graph --------------------------------------------------------------------------------

USER_GRAPH = f"/api/v1/users/{NAMES['user']}"
NOBODY_GRAPH = f"/api/v1/users/{NOBODY}"
STRANGERS = ("other", "moderator", "admin")


@scenario("PUT", "/api/v1/users/{username}/follow", "social")
async def _follow(w: World, actor: str) -> Call:
    before = await followers_of_user(w)

    async def verify(response: httpx2.Response) -> list[str]:
        after = await followers_of_user(w)
        if response.status_code >= 300:
            return check(after == before, f"a refused follow changed followers to {after}")
        await w.ok(actor, "DELETE", f"{USER_GRAPH}/follow")
        return check(w.name(actor) in after, f"{actor} is not a follower: {after}")

    return Call("PUT", f"{USER_GRAPH}/follow", verify=verify, missing_url=f"{NOBODY_GRAPH}/follow")


@scenario("DELETE", "/api/v1/users/{username}/follow", "social")
async def _unfollow(w: World, actor: str) -> Call:
    await w.ok("other", "PUT", f"{USER_GRAPH}/follow")
    if actor in STRANGERS:
        await w.ok(actor, "PUT", f"{USER_GRAPH}/follow")

    async def verify(response: httpx2.Response) -> list[str]:
        after = await followers_of_user(w)
        want = {"otto"} - ({w.name(actor)} if response.status_code < 300 else set())
        return check(after == want, f"after {actor}'s unfollow the followers are {after}")

    return Call(
        "DELETE", f"{USER_GRAPH}/follow", verify=verify, missing_url=f"{NOBODY_GRAPH}/follow"
    )


FLAGS = {"block": "blocking", "mute": "muting"}


def _relation(kind: str) -> tuple[Make, Make]:
    """Scenarios for PUT and DELETE of ``block`` or ``mute``; each cell leaves no relation."""

    async def put(w: World, actor: str) -> Call:
        async def verify(response: httpx2.Response) -> list[str]:
            if response.status_code >= 300:
                return []
            state = response.json()
            await w.ok(actor, "DELETE", f"{USER_GRAPH}/{kind}")
            return check(state[FLAGS[kind]] is True, f"{kind} answered {state}")

        return Call(
            "PUT", f"{USER_GRAPH}/{kind}", verify=verify, missing_url=f"{NOBODY_GRAPH}/{kind}"
        )

    async def delete(w: World, actor: str) -> Call:
        if actor in STRANGERS:
            await w.ok(actor, "PUT", f"{USER_GRAPH}/{kind}")

        async def verify(response: httpx2.Response) -> list[str]:
            if actor not in STRANGERS:
                return []
            state = await w.ok(actor, "PUT", f"{USER_GRAPH}/{kind}")  # idempotent: state
            await w.ok(actor, "DELETE", f"{USER_GRAPH}/{kind}")
            return check(state[FLAGS[kind]] is True, f"re-{kind} answered {state}")

        return Call(
            "DELETE", f"{USER_GRAPH}/{kind}", verify=verify, missing_url=f"{NOBODY_GRAPH}/{kind}"
        )

    return put, delete


for _kind in ("block", "mute"):
    _put, _delete = _relation(_kind)
    scenario("PUT", f"/api/v1/users/{{username}}/{_kind}", "social")(_put)
    scenario("DELETE", f"/api/v1/users/{{username}}/{_kind}", "social")(_delete)


def _own_list(kind: str) -> Make:
    """Each stranger blocks (mutes) the user first: their list holds the user and nothing of
    anyone else's; the user's own list is empty."""

    async def make(w: World, actor: str) -> Call:
        if actor in STRANGERS:
            await w.ok(actor, "PUT", f"{USER_GRAPH}/{kind}")

        async def verify(response: httpx2.Response) -> list[str]:
            if actor in STRANGERS:
                await w.ok(actor, "DELETE", f"{USER_GRAPH}/{kind}")
            if response.status_code >= 300:
                return []
            names = [item["username"] for item in response.json()["data"]]
            want = [NAMES["user"]] if actor in STRANGERS else []
            return check(names == want, f"{actor}'s {kind} list: {names}")

        return Call("GET", f"/api/v1/me/{kind}s", verify=verify)

    return make


for _kind in ("block", "mute"):
    scenario("GET", f"/api/v1/me/{_kind}s", "social")(_own_list(_kind))


REQUESTS = "/api/v1/me/follow-requests"
OTTO_REQUEST = f"{REQUESTS}/{NAMES['other']}"


async def _request_to_locked_user(w: World) -> None:
    """The user locks their account and the other asks to follow it."""
    await w.ok("user", "PATCH", "/api/v1/me", json={"locked": True})
    state = await w.ok("other", "PUT", f"{USER_GRAPH}/follow")
    assert state["requested"] is True, state


async def _unlock_and_forget(w: World) -> None:
    """Back to the world as it was: no request, no follow, the account unlocked."""
    await w.ok("other", "DELETE", f"{USER_GRAPH}/follow")
    await w.ok("user", "PATCH", "/api/v1/me", json={"locked": False})


async def _requested(w: World) -> list[str]:
    page = await w.ok("user", "GET", REQUESTS)
    return [item["username"] for item in page["data"]]


@scenario("GET", "/api/v1/me/follow-requests", "social")
async def _follow_requests(w: World, actor: str) -> Call:
    await _request_to_locked_user(w)

    async def verify(response: httpx2.Response) -> list[str]:
        await _unlock_and_forget(w)
        if response.status_code >= 300:
            return []
        names = [item["username"] for item in response.json()["data"]]
        want = [NAMES["other"]] if actor == "user" else []
        return check(names == want, f"{actor}'s follow requests: {names}")

    return Call("GET", REQUESTS, verify=verify)


@scenario("POST", "/api/v1/me/follow-requests/{username}/approve", "social")
async def _approve_request(w: World, actor: str) -> Call:
    await _request_to_locked_user(w)

    async def verify(response: httpx2.Response) -> list[str]:
        followers = await followers_of_user(w)
        waiting = await _requested(w)
        await _unlock_and_forget(w)
        if response.status_code < 300:
            return check(
                followers == {NAMES["other"]} and waiting == [],
                f"approved, yet followers {followers}, waiting {waiting}",
            )
        return check(
            followers == set() and waiting == [NAMES["other"]],
            f"{actor}'s refused approval left followers {followers}, waiting {waiting}",
        )

    return Call(
        "POST",
        f"{OTTO_REQUEST}/approve",
        verify=verify,
        missing_url=f"{REQUESTS}/{NOBODY}/approve",
    )


@scenario("DELETE", "/api/v1/me/follow-requests/{username}", "social")
async def _decline_request(w: World, actor: str) -> Call:
    await _request_to_locked_user(w)

    async def verify(response: httpx2.Response) -> list[str]:
        waiting = await _requested(w)
        await _unlock_and_forget(w)
        want = [] if actor == "user" else [NAMES["other"]]
        return check(waiting == want, f"after {actor}'s decline the requests are {waiting}")

    return Call("DELETE", OTTO_REQUEST, verify=verify, missing_url=f"{REQUESTS}/{NOBODY}")


@scenario("GET", "/api/v1/users", "social")
async def _find_users(w: World, actor: str) -> Call:
    """Anyone finds the user by the start of the name (no one here blocks anyone)."""

    async def verify(response: httpx2.Response) -> list[str]:
        names = [item["username"] for item in response.json()["data"]]
        return check(NAMES["user"] in names, f"{actor} found {names}")

    return Call("GET", f"/api/v1/users?prefix={NAMES['user'][:3]}", verify=verify)


@scenario("GET", "/api/v1/users/{username}/followers", "social")
async def _followers(w: World, actor: str) -> Call:
    return Call("GET", f"{USER_GRAPH}/followers", missing_url=f"{NOBODY_GRAPH}/followers")


@scenario("GET", "/api/v1/users/{username}/following", "social")
async def _following(w: World, actor: str) -> Call:
    return Call("GET", f"{USER_GRAPH}/following", missing_url=f"{NOBODY_GRAPH}/following")


# --- posts -------------------------------------------------------------------------------------

POSTS = "/api/v1/posts"


@scenario("POST", "/api/v1/posts", "social")
async def _create_post(w: World, actor: str) -> Call:
    async def verify(response: httpx2.Response) -> list[str]:
        if response.status_code >= 300:
            return []
        author = response.json()["author"]["username"]
        return check(author == w.name(actor), f"{actor}'s post is by {author}")

    return Call("POST", POSTS, json={"text": f"hello from {actor}"}, verify=verify)


@scenario("GET", "/api/v1/posts/{post_id}", "social")
async def _read_post(w: World, actor: str) -> Call:
    pid = await post_by(w, "user", "private")

    async def verify(response: httpx2.Response) -> list[str]:
        if response.status_code >= 300:
            return check("etag" not in response.headers, "a hidden post's 404 has an ETag")
        return check(response.json()["id"] == pid, "read another post")

    return Call("GET", f"{POSTS}/{pid}", verify=verify, missing_url=f"{POSTS}/{missing_id()}")


@scenario("PATCH", "/api/v1/posts/{post_id}", "social")
async def _edit_post(w: World, actor: str) -> Call:
    pid = await post_by(w, "user", "public", "original text")

    async def verify(response: httpx2.Response) -> list[str]:
        post = (await owner_post(w, pid)).json()
        want = ("edited", 2) if response.status_code < 300 else ("original text", 1)
        return check(
            (post["text"], post["version"]) == want, f"after {actor}'s edit the post is {post}"
        )

    return Call(
        "PATCH",
        f"{POSTS}/{pid}",
        json={"text": "edited"},
        verify=verify,
        missing_url=f"{POSTS}/{missing_id()}",
    )


@scenario("DELETE", "/api/v1/posts/{post_id}", "social")
async def _delete_post(w: World, actor: str) -> Call:
    pid = await post_by(w, "user", "public")

    async def verify(response: httpx2.Response) -> list[str]:
        after = (await owner_post(w, pid)).status_code
        want = 404 if response.status_code < 300 else 200
        return check(after == want, f"after {actor}'s delete the owner reads {after}")

    return Call("DELETE", f"{POSTS}/{pid}", verify=verify, missing_url=f"{POSTS}/{missing_id()}")


@scenario("PUT", "/api/v1/posts/{post_id}/like", "social")
async def _like(w: World, actor: str) -> Call:
    pid = await post_by(w, "user", "private")

    async def verify(response: httpx2.Response) -> list[str]:
        likes = (await counts(w, pid))["likes"]
        want = 1 if response.status_code < 300 else 0
        return check(likes == want, f"after {actor}'s like the post has {likes} likes")

    return Call(
        "PUT", f"{POSTS}/{pid}/like", verify=verify, missing_url=f"{POSTS}/{missing_id()}/like"
    )


@scenario("DELETE", "/api/v1/posts/{post_id}/like", "social")
async def _unlike(w: World, actor: str) -> Call:
    """The owner liked the post, and so did the actor where they can see it."""
    pid = await post_by(w, "user", "private")
    await w.ok("user", "PUT", f"{POSTS}/{pid}/like")
    if actor in ("moderator", "admin"):
        await w.ok(actor, "PUT", f"{POSTS}/{pid}/like")

    async def verify(response: httpx2.Response) -> list[str]:
        likes = (await counts(w, pid))["likes"]
        want = 0 if actor == "user" else 1
        return check(likes == want, f"after {actor}'s unlike the post has {likes} likes")

    return Call(
        "DELETE", f"{POSTS}/{pid}/like", verify=verify, missing_url=f"{POSTS}/{missing_id()}/like"
    )


async def bookmarked(w: World, actor: str) -> list[str]:
    if actor == "anonymous":
        return []
    page = await w.ok(actor, "GET", "/api/v1/me/bookmarks")
    return [post["id"] for post in page["data"]]


@scenario("PUT", "/api/v1/posts/{post_id}/bookmark", "social")
async def _bookmark(w: World, actor: str) -> Call:
    pid = await post_by(w, "user", "private")

    async def verify(response: httpx2.Response) -> list[str]:
        saved = pid in await bookmarked(w, actor)
        want = response.status_code < 300
        return check(saved == want, f"after {actor}'s bookmark (saved: {saved})")

    return Call(
        "PUT",
        f"{POSTS}/{pid}/bookmark",
        verify=verify,
        missing_url=f"{POSTS}/{missing_id()}/bookmark",
    )


@scenario("DELETE", "/api/v1/posts/{post_id}/bookmark", "social")
async def _unbookmark(w: World, actor: str) -> Call:
    """The owner bookmarked the post, and so did the actor where they can see it."""
    pid = await post_by(w, "user", "private")
    await w.ok("user", "PUT", f"{POSTS}/{pid}/bookmark")
    if actor in ("moderator", "admin"):
        await w.ok(actor, "PUT", f"{POSTS}/{pid}/bookmark")

    async def verify(response: httpx2.Response) -> list[str]:
        kept = pid in await bookmarked(w, "user")
        problems = check(kept == (actor != "user"), f"after {actor}'s removal the user's: {kept}")
        if actor in ("moderator", "admin"):
            problems += check(pid not in await bookmarked(w, actor), f"{actor} still has it")
        return problems

    return Call(
        "DELETE",
        f"{POSTS}/{pid}/bookmark",
        verify=verify,
        missing_url=f"{POSTS}/{missing_id()}/bookmark",
    )


@scenario("GET", "/api/v1/me/bookmarks", "social")
async def _bookmarks(w: World, actor: str) -> Call:
    """The user bookmarks their private post: it is in the user's list only."""
    pid = await post_by(w, "user", "private")
    await w.ok("user", "PUT", f"{POSTS}/{pid}/bookmark")

    async def verify(response: httpx2.Response) -> list[str]:
        if response.status_code >= 300:
            return []
        saved = [post["id"] for post in response.json()["data"]]
        return check((pid in saved) == (actor == "user"), f"{actor}'s bookmarks: {saved}")

    return Call("GET", "/api/v1/me/bookmarks", verify=verify)


@scenario("GET", "/api/v1/posts/{post_id}/likes", "social")
async def _likers(w: World, actor: str) -> Call:
    pid = await post_by(w, "user", "private")
    await w.ok("user", "PUT", f"{POSTS}/{pid}/like")

    async def verify(response: httpx2.Response) -> list[str]:
        if response.status_code >= 300:
            return []
        names = [u["username"] for u in response.json()["data"]]
        return check(names == [NAMES["user"]], f"likers listed {names}")

    return Call(
        "GET", f"{POSTS}/{pid}/likes", verify=verify, missing_url=f"{POSTS}/{missing_id()}/likes"
    )


@scenario("POST", "/api/v1/posts/{post_id}/share", "social")
async def _share(w: World, actor: str) -> Call:
    pid = await post_by(w, "user", "public")

    async def verify(response: httpx2.Response) -> list[str]:
        shares = (await counts(w, pid))["shares"]
        want = 1 if response.status_code < 300 else 0
        return check(shares == want, f"after {actor}'s share the post has {shares} shares")

    return Call(
        "POST", f"{POSTS}/{pid}/share", verify=verify, missing_url=f"{POSTS}/{missing_id()}/share"
    )


@scenario("DELETE", "/api/v1/posts/{post_id}/share", "social")
async def _unshare(w: World, actor: str) -> Call:
    """The owner shared the post, and so did the actor (signed in); undoing is one's own."""
    pid = await post_by(w, "user", "public")
    await w.ok("user", "POST", f"{POSTS}/{pid}/share")
    if actor in STRANGERS:
        await w.ok(actor, "POST", f"{POSTS}/{pid}/share")

    async def verify(response: httpx2.Response) -> list[str]:
        shares = (await counts(w, pid))["shares"]
        want = 0 if actor == "user" else 1
        return check(shares == want, f"after {actor}'s unshare the post has {shares} shares")

    return Call(
        "DELETE",
        f"{POSTS}/{pid}/share",
        verify=verify,
        missing_url=f"{POSTS}/{missing_id()}/share",
    )


# --- comments ------------------------------------------------------------------------------------

COMMENTS = "/api/v1/comments"


@scenario("POST", "/api/v1/posts/{post_id}/comments", "threads")
async def _comment(w: World, actor: str) -> Call:
    pid = await post_by(w, "user", "private")

    async def verify(response: httpx2.Response) -> list[str]:
        comments = (await counts(w, pid))["comments"]
        want = 1 if response.status_code < 300 else 0
        return check(comments == want, f"after {actor}'s comment the post has {comments}")

    return Call(
        "POST",
        f"{POSTS}/{pid}/comments",
        json={"text": f"{actor} says hi"},
        verify=verify,
        missing_url=f"{POSTS}/{missing_id()}/comments",
    )


@scenario("GET", "/api/v1/posts/{post_id}/comments", "threads")
async def _comments(w: World, actor: str) -> Call:
    pid = await post_by(w, "user", "private")
    cid = await comment_by(w, "user", pid)

    async def verify(response: httpx2.Response) -> list[str]:
        if response.status_code >= 300:
            return []
        ids = [c["id"] for c in response.json()["data"]]
        return check(ids == [cid], f"comments listed {ids}")

    return Call(
        "GET",
        f"{POSTS}/{pid}/comments",
        verify=verify,
        missing_url=f"{POSTS}/{missing_id()}/comments",
    )


@scenario("GET", "/api/v1/comments/{comment_id}/replies", "threads")
async def _replies(w: World, actor: str) -> Call:
    pid = await post_by(w, "user", "private")
    cid = await comment_by(w, "user", pid)
    rid = await comment_by(w, "user", pid, parent=cid)

    async def verify(response: httpx2.Response) -> list[str]:
        if response.status_code >= 300:
            return []
        ids = [c["id"] for c in response.json()["data"]]
        return check(ids == [rid], f"replies listed {ids}")

    return Call(
        "GET",
        f"{COMMENTS}/{cid}/replies",
        verify=verify,
        missing_url=f"{COMMENTS}/{missing_id()}/replies",
    )


@scenario("GET", "/api/v1/comments/{comment_id}", "threads")
async def _read_comment(w: World, actor: str) -> Call:
    cid = await comment_by(w, "user", await post_by(w, "user", "private"))

    async def verify(response: httpx2.Response) -> list[str]:
        if response.status_code >= 300:
            return []
        return check(response.json()["id"] == cid, "read another comment")

    return Call("GET", f"{COMMENTS}/{cid}", verify=verify, missing_url=f"{COMMENTS}/{missing_id()}")


@scenario("PATCH", "/api/v1/comments/{comment_id}", "threads")
async def _edit_comment(w: World, actor: str) -> Call:
    cid = await comment_by(w, "user", await post_by(w, "user", "public"))

    async def verify(response: httpx2.Response) -> list[str]:
        comment = await w.ok("user", "GET", f"{COMMENTS}/{cid}")
        want = ("edited", 2) if response.status_code < 300 else ("a comment", 1)
        got = (comment["text"], comment["version"])
        return check(got == want, f"after {actor}'s edit the comment is {comment}")

    return Call(
        "PATCH",
        f"{COMMENTS}/{cid}",
        json={"text": "edited"},
        verify=verify,
        missing_url=f"{COMMENTS}/{missing_id()}",
    )


@scenario("DELETE", "/api/v1/comments/{comment_id}", "threads")
async def _delete_comment(w: World, actor: str) -> Call:
    cid = await comment_by(w, "user", await post_by(w, "user", "public"))

    async def verify(response: httpx2.Response) -> list[str]:
        after = await w.call("user", "GET", f"{COMMENTS}/{cid}")
        want = 404 if response.status_code < 300 else 200
        return check(after.status_code == want, f"after {actor}'s delete: {after.status_code}")

    return Call(
        "DELETE", f"{COMMENTS}/{cid}", verify=verify, missing_url=f"{COMMENTS}/{missing_id()}"
    )


# --- timelines -----------------------------------------------------------------------------------


@scenario("GET", "/api/v1/feed", "threads")
async def _feed(w: World, actor: str) -> Call:
    return Call("GET", "/api/v1/feed")


@scenario("GET", "/api/v1/users/{username}/posts", "threads")
async def _user_posts(w: World, actor: str) -> Call:
    public = await post_by(w, "user", "public")
    private = await post_by(w, "user", "private")

    async def verify(response: httpx2.Response) -> list[str]:
        ids = {p["id"] for p in response.json()["data"]}
        sees_private = actor in ("user", "moderator", "admin")
        return check(
            public in ids and (private in ids) == sees_private,
            f"{actor} sees private={private in ids}, public={public in ids}",
        )

    return Call("GET", f"{USER_GRAPH}/posts", verify=verify, missing_url=f"{NOBODY_GRAPH}/posts")


@scenario("GET", "/api/v1/tags/{tag}/posts", "threads")
async def _tag_posts(w: World, actor: str) -> Call:
    public = await post_by(w, "user", "public", f"out loud #{TAG}")
    private = await post_by(w, "user", "private", f"to myself #{TAG}")

    async def verify(response: httpx2.Response) -> list[str]:
        ids = {p["id"] for p in response.json()["data"]}
        return check(
            public in ids and private not in ids, f"{actor}: the tag lists {ids} ({public=})"
        )

    return Call("GET", f"/api/v1/tags/{TAG}/posts", verify=verify)


# --- notifications -------------------------------------------------------------------------------


@scenario("GET", "/api/v1/notifications", "threads")
async def _notifications(w: World, actor: str) -> Call:
    notice = await add_notice_for_user(w)

    async def verify(response: httpx2.Response) -> list[str]:
        if response.status_code >= 300:
            return []
        ids = [n["id"] for n in response.json()["data"]]
        return check((notice in ids) == (actor == "user"), f"{actor} lists {ids} ({notice=})")

    return Call("GET", "/api/v1/notifications", verify=verify)


@scenario("GET", "/api/v1/notifications/unread-count", "threads")
async def _unread(w: World, actor: str) -> Call:
    await add_notice_for_user(w)

    async def verify(response: httpx2.Response) -> list[str]:
        if response.status_code >= 300:
            return []
        count = response.json()["count"]
        return check((count > 0) == (actor == "user"), f"{actor}'s unread count is {count}")

    return Call("GET", "/api/v1/notifications/unread-count", verify=verify)


@scenario("POST", "/api/v1/notifications/read", "threads")
async def _mark_read(w: World, actor: str) -> Call:
    """Everyone tries to mark the user's newest notification read."""
    notice = await add_notice_for_user(w)
    before = await unread_of_user(w)

    async def verify(response: httpx2.Response) -> list[str]:
        after = await unread_of_user(w)
        want = 0 if response.status_code < 300 else before
        return check(after == want, f"after {actor}'s mark-read the user has {after} unread")

    return Call("POST", "/api/v1/notifications/read", json={"up_to_id": notice}, verify=verify)


# --- webhooks (admins) ---------------------------------------------------------------------------

HOOKS = "/api/v1/webhooks"


async def hook_descriptions(w: World) -> list[str]:
    page = await w.ok("admin", "GET", HOOKS, params={"limit": "100"})
    return [h["description"] for h in page["data"]]


@scenario("POST", "/api/v1/webhooks", "admin")
async def _create_hook(w: World, actor: str) -> Call:
    description = f"by {actor}"

    async def verify(response: httpx2.Response) -> list[str]:
        made = description in await hook_descriptions(w)
        return check(made == (response.status_code < 300), f"{actor}'s webhook exists: {made}")

    body = {"url": HOOK_URL, "event_types": HOOK_EVENTS, "description": description}
    return Call("POST", HOOKS, json=body, verify=verify)


@scenario("GET", "/api/v1/webhooks", "admin")
async def _list_hooks(w: World, actor: str) -> Call:
    await webhook(w)
    return Call("GET", HOOKS)


@scenario("GET", "/api/v1/webhooks/{webhook_id}", "admin")
async def _read_hook(w: World, actor: str) -> Call:
    hook = await webhook(w)
    return Call("GET", f"{HOOKS}/{hook['id']}", missing_url=f"{HOOKS}/{missing_id()}")


@scenario("PATCH", "/api/v1/webhooks/{webhook_id}", "admin")
async def _edit_hook(w: World, actor: str) -> Call:
    hook = await webhook(w)

    async def verify(response: httpx2.Response) -> list[str]:
        now = (await w.ok("admin", "GET", f"{HOOKS}/{hook['id']}"))["description"]
        want = "changed" if response.status_code < 300 else "original"
        return check(now == want, f"after {actor}'s edit the description is {now!r}")

    return Call(
        "PATCH",
        f"{HOOKS}/{hook['id']}",
        json={"description": "changed"},
        verify=verify,
        missing_url=f"{HOOKS}/{missing_id()}",
    )


@scenario("DELETE", "/api/v1/webhooks/{webhook_id}", "admin")
async def _delete_hook(w: World, actor: str) -> Call:
    hook = await webhook(w)

    async def verify(response: httpx2.Response) -> list[str]:
        now = await w.call("admin", "GET", f"{HOOKS}/{hook['id']}")
        want = 404 if response.status_code < 300 else 200
        return check(now.status_code == want, f"after {actor}'s delete: {now.status_code}")

    return Call(
        "DELETE", f"{HOOKS}/{hook['id']}", verify=verify, missing_url=f"{HOOKS}/{missing_id()}"
    )


@scenario("POST", "/api/v1/webhooks/{webhook_id}/rotate-secret", "admin")
async def _rotate(w: World, actor: str) -> Call:
    hook = await webhook(w)

    async def verify(response: httpx2.Response) -> list[str]:
        now = await w.ok("admin", "GET", f"{HOOKS}/{hook['id']}")
        rotated = now["secret_rotated_at"] is not None
        if response.status_code < 300:
            fresh = response.json()["secret"]
            return check(rotated and fresh != hook["secret"], f"rotation answered {now}")
        return check(not rotated, f"a refused rotation rotated: {now}")

    return Call(
        "POST",
        f"{HOOKS}/{hook['id']}/rotate-secret",
        verify=verify,
        missing_url=f"{HOOKS}/{missing_id()}/rotate-secret",
    )


@scenario("GET", "/api/v1/webhooks/{webhook_id}/deliveries", "admin")
async def _deliveries(w: World, actor: str) -> Call:
    hook = await webhook(w)
    delivery = await add_failed_delivery(w, hook["id"])

    async def verify(response: httpx2.Response) -> list[str]:
        if response.status_code >= 300:
            return []
        ids = [d["id"] for d in response.json()["data"]]
        return check(ids == [delivery], f"deliveries listed {ids}")

    return Call(
        "GET",
        f"{HOOKS}/{hook['id']}/deliveries",
        verify=verify,
        missing_url=f"{HOOKS}/{missing_id()}/deliveries",
    )


@scenario("POST", "/api/v1/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver", "admin")
async def _redeliver(w: World, actor: str) -> Call:
    hook = await webhook(w)
    delivery = await add_failed_delivery(w, hook["id"])

    async def verify(response: httpx2.Response) -> list[str]:
        if response.status_code < 300:
            body = response.json()
            return check(
                body["status"] == "pending" and body["attempts"] == 0, f"redelivery {body}"
            )
        page = await w.ok("admin", "GET", f"{HOOKS}/{hook['id']}/deliveries")
        [row] = page["data"]
        return check(
            (row["status"], row["attempts"]) == ("dead", 5), f"a refused redelivery: {row}"
        )

    return Call(
        "POST",
        f"{HOOKS}/{hook['id']}/deliveries/{delivery}/redeliver",
        verify=verify,
        missing_url=f"{HOOKS}/{missing_id()}/deliveries/{missing_id()}/redeliver",
    )


# --- reports -------------------------------------------------------------------------------------

REPORTS = "/api/v1/moderation/reports"


async def reported_post(w: World) -> tuple[str, str]:
    """A public post by the user, reported by the other user: (post id, report id)."""
    post_id = await post_by(w, "user", "public", "a reported post")
    report = await w.ok(
        "other", "POST", "/api/v1/reports", json={"post_id": post_id, "reason": "spam"}
    )
    return post_id, str(report["id"])


@scenario("POST", "/api/v1/reports", "reports")
async def _report(w: World, actor: str) -> Call:
    post_id = await post_by(w, "user", "public", "a post to report")

    async def verify(response: httpx2.Response) -> list[str]:
        page = await w.ok("admin", "GET", REPORTS, params={"target_id": post_id})
        made = len(page["data"])
        return check(made == (response.status_code < 300), f"{made} reports of {post_id}")

    return Call(
        "POST", "/api/v1/reports", json={"post_id": post_id, "reason": "spam"}, verify=verify
    )


@scenario("GET", "/api/v1/moderation/reports", "reports")
async def _reports(w: World, actor: str) -> Call:
    _post_id, report_id = await reported_post(w)

    async def verify(response: httpx2.Response) -> list[str]:
        if response.status_code >= 300:
            return []
        ids = [r["id"] for r in response.json()["data"]]
        return check(report_id in ids, f"reports listed {ids}")

    return Call("GET", REPORTS, verify=verify)


@scenario("GET", "/api/v1/moderation/summary", "reports")
async def _reports_summary(w: World, actor: str) -> Call:
    await reported_post(w)

    async def verify(response: httpx2.Response) -> list[str]:
        if response.status_code >= 300:
            return []
        return check(response.json()["open"] >= 1, f"summary {response.text}")

    return Call("GET", "/api/v1/moderation/summary", verify=verify)


@scenario("PATCH", "/api/v1/moderation/reports/{report_id}", "reports")
async def _decide_report(w: World, actor: str) -> Call:
    post_id, report_id = await reported_post(w)

    async def verify(response: httpx2.Response) -> list[str]:
        page = await w.ok("admin", "GET", REPORTS, params={"target_id": post_id})
        [status] = [r["status"] for r in page["data"]]
        closed = status != "open"
        return check(closed == (response.status_code < 300), f"report {report_id} is {status}")

    return Call(
        "PATCH",
        f"{REPORTS}/{report_id}",
        json={"status": "dismissed"},
        verify=verify,
        missing_url=f"{REPORTS}/{missing_id()}",
    )


# --- audit trail and dead letters (admins) -------------------------------------------------------

DEAD = "/api/v1/admin/dead-letters"


@scenario("GET", "/api/v1/admin/audit-events", "admin")
async def _audit(w: World, actor: str) -> Call:
    async def verify(response: httpx2.Response) -> list[str]:
        if response.status_code >= 300:
            return []
        actions = [e["action"] for e in response.json()["data"]]
        return check(actions == ["account:role_changed"], f"the audit trail lists {actions}")

    params = {"action": "account:role_changed"}  # the moderator's promotion
    return Call("GET", "/api/v1/admin/audit-events", params=params, verify=verify)


@scenario("GET", "/api/v1/admin/dead-letters", "admin")
async def _dead_letters(w: World, actor: str) -> Call:
    letter = await add_dead_letter(w)

    async def verify(response: httpx2.Response) -> list[str]:
        if response.status_code >= 300:
            return []
        ids = [d["id"] for d in response.json()["data"]]
        return check(letter in ids, f"dead letters listed {ids}")

    return Call("GET", DEAD, verify=verify)


@scenario("POST", "/api/v1/admin/dead-letters/{dead_letter_id}/replay", "admin")
async def _replay(w: World, actor: str) -> Call:
    letter = await add_dead_letter(w)

    async def verify(response: httpx2.Response) -> list[str]:
        pending = [d["id"] for d in (await w.ok("admin", "GET", DEAD))["data"]]
        replayed = letter not in pending
        return check(replayed == (response.status_code < 300), f"{letter} replayed: {replayed}")

    return Call(
        "POST",
        f"{DEAD}/{letter}/replay",
        verify=verify,
        missing_url=f"{DEAD}/{missing_id()}/replay",
    )


# --- running the matrix --------------------------------------------------------------------------


def template_matches(template: str, url: str) -> bool:
    pattern = re.sub(r"\\\{[a-z_]+\\\}", "[^/]+", re.escape(template))
    return re.fullmatch(pattern, urlsplit(url).path) is not None


def problem_errors(response: httpx2.Response, status: int, where: str) -> list[str]:
    try:
        assert_problem(response, status)
    except AssertionError as exc:
        return [f"{where}: not a problem+json {status}: {exc}"]
    except ValueError as exc:
        return [f"{where}: not JSON: {exc}"]
    return []


def role_denied(policy: str, actor: str) -> bool:
    """The route's declared policy refuses this signed-in actor's role outright, before the
    route looks at any resource."""
    if actor == "anonymous" or not policy.startswith("require:"):
        return False
    return Permission(policy.removeprefix("require:")) not in ROLE_PERMISSIONS[ROLES[actor]]


def declared_policies(app: FastAPI) -> dict[Key, str]:
    found: dict[Key, str] = {}
    for route in schema_routes(app):
        [policy] = policies(route.dependant)
        found.update({(method, route.path): policy for method in route.methods})
    return found


async def run_cell(w: World, key: Key, actor: str, policy: str) -> list[str]:
    """One cell: set up, call, check the status, the problem body, the effect or its absence,
    and the same call on ids that do not exist: a refusal by role or for want of credentials
    comes first (the same 401/403), anything else is the 404 of a missing resource (a 403 for
    not being the owner needs a resource to own)."""
    method, path = key
    want = EXPECTED[key][actor]
    where = f"{method} {path} as {actor}"
    denied_by_role = role_denied(policy, actor)
    if denied_by_role and want != 403:
        return [f"{where}: the policy {policy} refuses this role, yet the row expects {want}"]
    call = await SCENARIOS[key].make(w, actor)
    assert call.method == method, (where, call.method)
    assert template_matches(path, call.url), (where, call.url)
    response = await w.call(actor, method, call.url, **call.kwargs())
    if response.status_code != want:
        return [f"{where}: expected {want}, got {response.status_code}: {response.text[:300]}"]
    problems: list[str] = []
    if want >= 400:
        problems += problem_errors(response, want, where)
    if want == 401 and response.headers.get("www-authenticate") != "Bearer":
        problems.append(f"{where}: 401 without 'WWW-Authenticate: Bearer'")
    if call.verify is not None:
        problems += await call.verify(response)
    if call.missing_url is not None:
        assert template_matches(path, call.missing_url), (where, call.missing_url)
        twin_want = want if want == 401 or denied_by_role else 404
        twin = await w.call(actor, method, call.missing_url, **call.kwargs())
        if twin.status_code != twin_want:
            problems.append(
                f"{where} on ids that do not exist: expected {twin_want}, "
                f"got {twin.status_code}: {twin.text[:300]}"
            )
        else:
            problems += problem_errors(twin, twin_want, f"{where} on missing ids")
    return problems


GROUPS = sorted({s.group for s in SCENARIOS.values()})


@pytest.mark.parametrize("group", GROUPS)
async def test_authorization_matrix(
    client: httpx2.AsyncClient,
    container: Container,
    github: GitHubStandIn,  # noqa: F811
    bare_app: FastAPI,
    group: str,
) -> None:
    """Every cell of every route in ``group``; all mismatches are listed on failure."""
    declared = declared_policies(bare_app)
    world = await build_world(client, container, github)
    failures: list[str] = []
    for key, item in SCENARIOS.items():
        if item.group == group:
            for actor in ACTORS:
                failures += await run_cell(world, key, actor, declared[key])
    assert not failures, "authorization matrix mismatches:\n" + "\n".join(failures)
