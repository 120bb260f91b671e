"""Sign-in with GitHub against a local stand-in that serves GitHub's OAuth endpoints and its
``/user`` and ``/user/emails`` API with GitHub's response shapes; on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import asyncpg
import httpx2
import pytest

from tests.conftest import make_settings
from tests.oidc.fixtures import github, github_server, provider_settings  # noqa: F401 (fixtures)
from tests.oidc.flows import (
    audit_actions,
    back_to_app,
    identity_rows,
    link,
    proof,
    query_of,
    session_count,
    sign_in,
    through_provider,
    to_provider,
    user_count,
)
from tests.oidc.github_standin import GitHubStandIn, GitHubUser
from tests.support.api import assert_problem, register, sign_up
from tidings.core.container import Container
from tidings.settings import Settings


@pytest.fixture
def settings(tmp_path: Path, database_url: str, github: GitHubStandIn) -> Settings:  # noqa: F811
    return make_settings(tmp_path / "data", database_url, **provider_settings(github=github))


async def test_a_new_user_signs_in_with_github(
    client: httpx2.AsyncClient,
    container: Container,
    github: GitHubStandIn,  # noqa: F811
) -> None:
    github.signed_in_as = GitHubUser.with_email(583231, "The-Octocat", "octo@example.com")
    provider_url = await to_provider(client, "github")
    assert provider_url.startswith(f"{github.base_url}/login/oauth/authorize?")
    assert query_of(provider_url)["scope"] == "read:user user:email"
    assert "nonce" not in query_of(provider_url)

    octo = await sign_in(client, "github")
    assert octo.me["username"] == "The_Octocat"
    assert octo.me["display_name"] == "The-Octocat"
    assert octo.me["email"] == "octo@example.com"
    [row] = await identity_rows(container, int(octo.me["id"]))
    assert (row.provider, row.subject) == ("github", "583231")  # the numeric id, not the login

    # A renamed GitHub login is still the same identity.
    github.signed_in_as = GitHubUser.with_email(583231, "renamed", "octo@example.com")
    assert (await sign_in(client, "github")).me["id"] == octo.me["id"]
    assert await audit_actions(container, int(octo.me["id"])) == [
        "account:registered",
        "identity:linked",
        "identity:login",
        "identity:login",
    ]


def _nothing_held(database_url: str) -> bool:
    """From another connection: no transaction of the API's is open (SQLite: a writer can take
    the write lock at once; PostgreSQL: no session of this database is idle in a transaction)."""
    if database_url.startswith("sqlite"):
        conn = sqlite3.connect(database_url.split("///", 1)[1], timeout=0.2)
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.rollback()
            return True
        except sqlite3.OperationalError:  # database is locked
            return False
        finally:
            conn.close()

    async def idle_in_transaction() -> int:
        conn = await asyncpg.connect(database_url.replace("+asyncpg", ""), timeout=10)
        try:
            count: int = await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid() AND state LIKE 'idle in transaction%'"
            )
            return count
        finally:
            await conn.close()

    with ThreadPoolExecutor(1) as pool:  # the stand-in's thread already runs an event loop
        return pool.submit(asyncio.run, idle_in_transaction()).result() == 0


async def test_no_transaction_is_held_while_github_answers(
    client: httpx2.AsyncClient,
    database_url: str,
    github: GitHubStandIn,  # noqa: F811
) -> None:
    """The callback asks GitHub for the token and the user between two units of work: a slow
    provider must not hold a row lock (or SQLite's write lock) for every other writer."""
    seen: list[bool] = []
    github.on_token = lambda: seen.append(_nothing_held(database_url))
    github.signed_in_as = GitHubUser.with_email(4242, "patient", "patient@example.com")
    assert (await sign_in(client, "github")).me["username"] == "patient"
    assert seen == [True]


async def test_usernames_are_made_unique_and_never_reserved(
    client: httpx2.AsyncClient,
    github: GitHubStandIn,  # noqa: F811
) -> None:
    await register(client, "quinn")
    github.signed_in_as = GitHubUser.with_email(1, "quinn", "quinn.gh@example.com")
    assert (await sign_in(client, "github")).me["username"] == "quinn2"
    github.signed_in_as = GitHubUser.with_email(2, "admin", "someone@example.com")
    assert (await sign_in(client, "github")).me["username"] == "admin2"
    github.signed_in_as = GitHubUser.with_email(3, "x", "zoë.o'brien@example.com")
    github.signed_in_as.name = None
    assert (await sign_in(client, "github")).me["username"] == "zoe_o_brien"


async def test_github_with_only_unverified_emails_is_refused(
    client: httpx2.AsyncClient,
    container: Container,
    github: GitHubStandIn,  # noqa: F811
) -> None:
    user = GitHubUser.with_email(77, "rex", "rex@example.com", verified=False)
    user.emails.append({"email": "rex@work.example", "primary": False, "verified": False})
    github.signed_in_as = user
    callback = await through_provider(await to_provider(client, "github"))
    body = assert_problem(await back_to_app(client, callback), 403)
    assert "GitHub did not confirm a verified email" in body["detail"]
    assert await user_count(container) == 0
    assert await session_count(container) == 0

    # A verified secondary address is used when the primary is not verified.
    user.emails[1]["verified"] = True
    assert (await sign_in(client, "github")).me["email"] == "rex@work.example"


async def test_an_unverified_local_account_is_not_taken_over_through_github(
    client: httpx2.AsyncClient,
    container: Container,
    github: GitHubStandIn,  # noqa: F811
) -> None:
    victim = await register(client, "sam")
    github.signed_in_as = GitHubUser.with_email(99, "attacker", "sam@example.com")
    callback = await through_provider(await to_provider(client, "github"))
    assert_problem(await back_to_app(client, callback), 409)
    assert await identity_rows(container, int(victim["id"])) == []
    assert await session_count(container) == 0


async def test_github_refusals_are_problems(
    client: httpx2.AsyncClient,
    container: Container,
    github: GitHubStandIn,  # noqa: F811
) -> None:
    github.signed_in_as = None  # the user clicks "Cancel": GitHub sends error=access_denied
    callback = await through_provider(await to_provider(client, "github"))
    assert "access_denied" in assert_problem(await back_to_app(client, callback), 400)["detail"]

    github.signed_in_as = GitHubUser.with_email(5, "tia", "tia@example.com")
    callback = await through_provider(await to_provider(client, "github"))
    tampered = callback.replace("code=", "code=0")  # GitHub: bad_verification_code
    body = assert_problem(await back_to_app(client, tampered), 400)
    assert "bad_verification_code" in body["detail"]
    assert await session_count(container) == 0


async def test_linking_github_conflicts_are_refused(
    client: httpx2.AsyncClient,
    github: GitHubStandIn,  # noqa: F811
) -> None:
    github.signed_in_as = GitHubUser.with_email(11, "uma", "uma@example.com")
    await sign_in(client, "github")
    victor = await sign_up(client, "victor")
    # a token alone links nothing: the holder's password first
    done = "https://app.example.com/auth/done"
    for extra, msg in (
        ({}, "field required"),
        ({"password": "not-his-password"}, "does not match"),
    ):
        refused = await client.post(
            "/api/v1/me/identities/github",
            json={"redirect_uri": done, **extra},
            headers=victor.headers,
        )
        problem = assert_problem(refused, 422)
        assert (problem["errors"][0]["loc"], problem["errors"][0]["msg"]) == (
            ["body", "password"],
            msg,
        )
    taken = await link(client, victor, "github")  # uma's GitHub account is someone else's
    assert "linked to another Tidings account" in assert_problem(taken, 409)["detail"]

    github.signed_in_as = GitHubUser.with_email(12, "victor-gh", "victor.gh@example.com")
    linked = await link(client, victor, "github")
    assert linked.status_code == 302
    assert query_of(linked.headers["location"]) == {"linked": "github", "state": "link-1"}
    again = await client.post(
        "/api/v1/me/identities/github",
        json={"redirect_uri": "https://app.example.com/auth/done", **proof(victor)},
        headers=victor.headers,
    )
    assert "unlink it first" in assert_problem(again, 409)["detail"]
    bad_redirect = await client.post(
        "/api/v1/me/identities/github",
        json={"redirect_uri": "https://evil.example/", **proof(victor)},
        headers=victor.headers,
    )
    assert_problem(bad_redirect, 400)
    assert_problem(await client.post("/api/v1/me/identities/github", json={}), 401)
