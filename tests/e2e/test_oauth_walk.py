"""The issue's acceptance walk, browser-less: a new user signs in through each provider, gets
tokens, calls GET /api/v1/me, links the second provider, signs in through it into the same
account and unlinks it — with the real OpenID Connect provider and the GitHub stand-in."""

from __future__ import annotations

from pathlib import Path

import httpx2
import pytest

from tests.conftest import make_settings
from tests.oidc.fixtures import (  # noqa: F401 (fixtures)
    github,
    github_server,
    oidc_provider,
    provider_settings,
)
from tests.oidc.flows import (
    Pkce,
    audit_actions,
    back_to_app,
    identity_rows,
    link,
    mail_subjects,
    proof,
    query_of,
    session_count,
    sign_in,
    step_up,
    step_up_callback,
    through_provider,
    unlink,
)
from tests.oidc.github_standin import GitHubStandIn, GitHubUser
from tests.oidc.harness import OIDCProvider
from tests.support.api import assert_problem
from tidings.core.container import Container
from tidings.settings import Settings


@pytest.fixture
def settings(
    tmp_path: Path,
    database_url: str,
    oidc_provider: OIDCProvider,  # noqa: F811
    github: GitHubStandIn,  # noqa: F811
) -> Settings:
    return make_settings(  # mail stays queued, for the tests to read
        tmp_path / "data",
        database_url,
        mail_interval_seconds=3600,
        **provider_settings(oidc_provider, github),
    )


async def _providers(client: httpx2.AsyncClient, who: dict[str, str]) -> list[str]:
    response = await client.get("/api/v1/me/identities", headers=who)
    assert response.status_code == 200, response.text
    return [identity["provider"] for identity in response.json()["data"]]


@pytest.mark.parametrize(
    ("first", "second"), [("google", "github"), ("github", "keycloak")], ids=["google", "github"]
)
async def test_sign_in_link_sign_in_again_and_unlink(
    client: httpx2.AsyncClient,
    container: Container,
    github: GitHubStandIn,  # noqa: F811
    first: str,
    second: str,
) -> None:
    # Each provider knows the person under a different address: no joining by email here.
    github.signed_in_as = GitHubUser.with_email(4242, "wanda-gh", "wanda.codes@example.com")
    login = "wanda"

    wanda = await sign_in(client, first, login)  # a new account, tokens, GET /me
    user_id = wanda.me["id"]
    assert wanda.me["email_verified"] is True
    assert await _providers(client, wanda.headers) == [first]

    # The account has no password: its holder confirms it is them through the provider first.
    unconfirmed = await client.post(
        f"/api/v1/me/identities/{second}",
        json={"redirect_uri": "https://app.example.com/auth/done", **proof(wanda)},
        headers=wanda.headers,
    )
    assert "confirm it is you" in assert_problem(unconfirmed, 403)["detail"]
    pkce = Pkce.new()
    back = await step_up_callback(client, wanda, first, login, pkce)
    assert back.status_code == 302, back.text
    came_back = query_of(back.headers["location"])
    assert (came_back["reauthenticated"], came_back["state"]) == (first, "step-up-1")
    confirmed = await client.post(
        "/api/v1/me/reauthentication",
        json={"code": came_back["code"], "code_verifier": pkce.verifier},
        headers=wanda.headers,
    )
    assert confirmed.status_code == 200, confirmed.text
    assert confirmed.json()["provider"] == first

    linked = await link(client, wanda, second, login)
    assert linked.status_code == 302, linked.text
    assert query_of(linked.headers["location"])["linked"] == second
    assert sorted(await _providers(client, wanda.headers)) == sorted([first, second])

    via_second = await sign_in(client, second, login)
    assert via_second.me["id"] == user_id

    bare = await client.request(
        "DELETE", f"/api/v1/me/identities/{second}", json={}, headers=wanda.headers
    )
    assert assert_problem(bare, 422)["errors"][0]["loc"] == ["body", "confirm_username"]
    unlinked = await unlink(client, wanda, second)
    assert unlinked.status_code == 204
    assert await _providers(client, wanda.headers) == [first]
    gone = await unlink(client, wanda, second)
    assert_problem(gone, 404)
    last = await unlink(client, wanda, first)
    assert_problem(last, 409)

    assert await audit_actions(container, int(user_id)) == [
        "account:registered",
        "identity:linked",
        "identity:login",
        "auth:reauthenticated",
        "identity:linked",
        "identity:login",
        "identity:unlinked",
    ]
    assert await session_count(container) == 2
    assert len(await identity_rows(container, int(user_id))) == 1
    # the account's address heard of each change of its ways in (not of its creation)
    assert await mail_subjects(container, wanda.me["email"]) == [
        "A sign-in method was added to your account",
        "A sign-in method was removed from your account",
    ]


async def test_a_link_ticket_works_once_and_only_while_signed_in(
    client: httpx2.AsyncClient,
    container: Container,
    github: GitHubStandIn,  # noqa: F811
) -> None:
    xena = await sign_in(client, "google", "xena")
    assert (await step_up(client, xena, "google", "xena")).status_code == 200
    started = await client.post(
        "/api/v1/me/identities/github",
        json={"redirect_uri": "https://app.example.com/auth/done", **proof(xena)},
        headers=xena.headers,
    )
    url = started.json()["authorization_url"]
    assert url.startswith("http://testserver/api/v1/auth/github/authorize?link_ticket=")
    assert started.json()["expires_in"] == 600
    opened = await client.get(url)
    assert opened.status_code == 302
    again = await client.get(url)
    assert "ticket is unknown" in assert_problem(again, 400)["detail"]
    assert_problem(await client.get(url.replace("/github/", "/google/")), 400)

    # Signing out before the provider answers cancels the link.
    await client.post("/api/v1/auth/revoke", data={"token": xena.refresh_token})
    github.signed_in_as = GitHubUser.with_email(7, "xena-gh", "xena.gh@example.com")
    response = await back_to_app(client, await through_provider(opened.headers["location"]))
    assert "signed out" in assert_problem(response, 403)["detail"]
    assert await identity_rows(container, int(xena.me["id"])) != []  # only the google one
    assert [r.provider for r in await identity_rows(container, int(xena.me["id"]))] == ["google"]
