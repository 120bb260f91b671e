"""An account a sign-in provider made has no password: before a sensitive change its holder
confirms it is them through a provider linked to it — with the real OpenID Connect provider,
on SQLite and PostgreSQL. ``POST /api/v1/me/reauthentication/{p}`` gives a ticket URL for the
browser; the provider sends the browser back to the app with a code; the session that asked
redeems it (``POST /api/v1/me/reauthentication``). A token alone, another session, a session
signed out meanwhile, another provider account, an old authentication, a used ticket or code
confirm nothing."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx2
import pytest
from sqlalchemy import select, update

from tests.conftest import make_settings
from tests.oidc.fixtures import (  # noqa: F401 (fixtures)
    APP_REDIRECT,
    oidc_provider,
    provider_settings,
)
from tests.oidc.flows import (
    Pkce,
    SignedIn,
    audit_actions,
    back_to_app,
    query_of,
    sign_in,
    step_up,
    step_up_callback,
    through_provider,
)
from tests.oidc.harness import OIDCProvider
from tests.support.api import assert_problem, login, make_admin
from tests.support.rows import confirm_holder
from tidings.auth.models import AuthSession
from tidings.auth.providers.models import OAuthAuthorization
from tidings.core.container import Container
from tidings.core.db import utcnow
from tidings.settings import Settings

START = "/api/v1/me/reauthentication"
SESSIONS = "/api/v1/me/sessions"


@pytest.fixture
def settings(tmp_path: Path, database_url: str, oidc_provider: OIDCProvider) -> Settings:  # noqa: F811
    return make_settings(tmp_path / "data", database_url, **provider_settings(oidc_provider))


async def _start(
    client: httpx2.AsyncClient, who: SignedIn, provider: str, pkce: Pkce | None = None
) -> httpx2.Response:
    challenge = (pkce or Pkce.new()).challenge
    body = {"redirect_uri": APP_REDIRECT, "state": "s", "code_challenge": challenge}
    return await client.post(f"{START}/{provider}", json=body, headers=who.headers)


async def _to_provider(
    client: httpx2.AsyncClient, who: SignedIn, provider: str, pkce: Pkce | None = None
) -> str:
    started = await _start(client, who, provider, pkce)
    assert started.status_code == 200, started.text
    opened = await client.get(started.json()["authorization_url"])
    assert opened.status_code == 302, opened.text
    return str(opened.headers["location"])


async def _redeem(
    client: httpx2.AsyncClient, who: SignedIn, code: str, pkce: Pkce
) -> httpx2.Response:
    body = {"code": code, "code_verifier": pkce.verifier}
    return await client.post(START, json=body, headers=who.headers)


async def _end_others(client: httpx2.AsyncClient, who: SignedIn) -> httpx2.Response:
    body = {"confirm_username": who.me["username"]}
    return await client.request("DELETE", SESSIONS, json=body, headers=who.headers)


async def _confirmed(container: Container, user_id: int) -> list[bool]:
    """Per session of the account, oldest first: confirmed by its holder or not."""
    async with container.db.unit_of_work(write=False) as session:
        rows = await session.scalars(
            select(AuthSession.reauthenticated_at)
            .where(AuthSession.user_id == user_id)
            .order_by(AuthSession.created_at, AuthSession.id)
        )
        return [at is not None for at in rows]


async def test_the_provider_authenticates_afresh_and_the_asking_session_redeems_the_code(
    client: httpx2.AsyncClient, container: Container
) -> None:
    gus = await sign_in(client, "keycloak", "gus")
    signing_in = await client.get(
        "/api/v1/auth/keycloak/authorize", params={"redirect_uri": APP_REDIRECT}
    )
    assert "max_age" not in parse_qs(urlsplit(signing_in.headers["location"]).query)
    pkce = Pkce.new()
    provider_url = await _to_provider(client, gus, "keycloak", pkce)
    assert parse_qs(urlsplit(provider_url).query)["max_age"] == ["0"]
    back = await back_to_app(client, await through_provider(provider_url, "gus"))
    assert back.status_code == 302, back.text
    came_back = query_of(back.headers["location"])
    assert (came_back["reauthenticated"], came_back["state"]) == ("keycloak", "s")
    # the browser's return alone confirms nothing
    assert await _confirmed(container, int(gus.me["id"])) == [False]
    assert "confirm it is you" in assert_problem(await _end_others(client, gus), 403)["detail"]
    wrong = await _redeem(client, gus, came_back["code"], Pkce.new())  # another verifier
    assert "code_verifier" in assert_problem(wrong, 422)["detail"]
    done = await _redeem(client, gus, came_back["code"], pkce)
    assert done.status_code == 200, done.text
    assert done.json()["provider"] == "keycloak"
    assert await _confirmed(container, int(gus.me["id"])) == [True]
    assert (await _end_others(client, gus)).status_code == 204
    assert "auth:reauthenticated" in await audit_actions(container, int(gus.me["id"]))
    again = await _redeem(client, gus, came_back["code"], pkce)
    assert assert_problem(again, 422)["errors"][0]["loc"] == ["body", "code"]


async def test_a_code_confirms_only_whoever_started_with_its_verifier(
    client: httpx2.AsyncClient, container: Container
) -> None:
    """Someone holding a stolen token of ivy's starts a confirmation and gets ivy's browser to
    open the URL: ivy, signed in at the provider, comes back to her app with the code. Her app
    cannot redeem it — not from another session, and not from the very session the token was
    stolen from (it lacks the starter's verifier) — and the thief never sees the code."""
    ivy = await sign_in(client, "keycloak", "ivy")
    elsewhere = await sign_in(client, "keycloak", "ivy")  # another session of the account
    thiefs = Pkce.new()
    back = await step_up_callback(client, ivy, "keycloak", "ivy", thiefs)  # ivy's token
    code = query_of(back.headers["location"])["code"]
    apps = Pkce.new()  # what ivy's app holds: a verifier of its own, not the thief's
    for redeemer in (ivy, elsewhere):
        refused = await _redeem(client, redeemer, code, apps)
        assert "start again" in assert_problem(refused, 422)["detail"]
    assert_problem(await _redeem(client, elsewhere, code, thiefs), 422)  # another session
    assert_problem(await _redeem(client, ivy, "guessed-" + code[:8], thiefs), 422)
    assert await _confirmed(container, int(ivy.me["id"])) == [False, False]
    assert "confirm it is you" in assert_problem(await _end_others(client, ivy), 403)["detail"]
    # a confirmation counts for its own session only
    assert (await step_up(client, ivy, "keycloak", "ivy")).status_code == 200
    assert await _confirmed(container, int(ivy.me["id"])) == [True, False]
    assert (await _end_others(client, ivy)).status_code == 204
    assert_problem(await client.get("/api/v1/me", headers=elsewhere.headers), 401)


async def test_another_provider_account_confirms_nothing(
    client: httpx2.AsyncClient, container: Container
) -> None:
    hal = await sign_in(client, "keycloak", "hal")
    provider_url = await _to_provider(client, hal, "keycloak")
    # someone else signs in at the provider (a thief with hal's token and their own account)
    back = await back_to_app(client, await through_provider(provider_url, "mallory"))
    assert "not the one linked" in assert_problem(back, 403)["detail"]
    assert await _confirmed(container, int(hal.me["id"])) == [False]
    assert "auth:reauthenticated" not in await audit_actions(container, int(hal.me["id"]))


async def test_a_ticket_works_once_and_only_while_signed_in(
    client: httpx2.AsyncClient, container: Container
) -> None:
    jo = await sign_in(client, "keycloak", "jo")
    started = await _start(client, jo, "keycloak")
    url = started.json()["authorization_url"]
    assert started.json()["expires_in"] == 600
    opened = await client.get(url)
    assert opened.status_code == 302
    assert "ticket is unknown" in assert_problem(await client.get(url), 400)["detail"]
    # signing out before the provider answers cancels the confirmation
    await client.post("/api/v1/auth/revoke", data={"token": jo.refresh_token})
    back = await back_to_app(client, await through_provider(opened.headers["location"], "jo"))
    assert "signed out" in assert_problem(back, 403)["detail"]
    assert await _confirmed(container, int(jo.me["id"])) == [False]


async def test_a_suspended_account_is_not_confirmed(
    client: httpx2.AsyncClient, container: Container
) -> None:
    lia = await sign_in(client, "keycloak", "lia")
    provider_url = await _to_provider(client, lia, "keycloak")
    await make_admin(container, "root_admin")
    admin = await login(client, "root_admin")
    suspended = await client.patch(
        "/api/v1/admin/users/lia", json={"suspended": True}, headers=admin.headers
    )
    assert suspended.status_code == 200, suspended.text
    back = await back_to_app(client, await through_provider(provider_url, "lia"))
    assert "suspended" in assert_problem(back, 403)["detail"]
    assert await _confirmed(container, int(lia.me["id"])) == [False]


async def test_a_code_and_a_confirmation_expire(
    client: httpx2.AsyncClient, container: Container
) -> None:
    mo = await sign_in(client, "keycloak", "mo")
    pkce = Pkce.new()
    back = await step_up_callback(client, mo, "keycloak", "mo", pkce)
    async with container.db.unit_of_work() as session:  # two minutes later
        await session.execute(
            update(OAuthAuthorization).values(expires_at=utcnow() - timedelta(seconds=1))
        )
    late = await _redeem(client, mo, query_of(back.headers["location"])["code"], pkce)
    assert "expired" in assert_problem(late, 422)["detail"]
    assert (await step_up(client, mo, "keycloak", "mo")).status_code == 200
    await confirm_holder(container, int(mo.me["id"]), timedelta(minutes=11))  # the window ends
    assert "confirm it is you" in assert_problem(await _end_others(client, mo), 403)["detail"]


async def test_only_a_linked_enabled_provider_and_a_registered_redirect(
    client: httpx2.AsyncClient,
) -> None:
    kai = await sign_in(client, "keycloak", "kai")
    assert "No Google sign-in" in assert_problem(await _start(client, kai, "google"), 404)["detail"]
    assert_problem(await _start(client, kai, "nosuch"), 404)
    challenge = Pkce.new().challenge
    bad = await client.post(
        f"{START}/keycloak",
        json={"redirect_uri": "https://evil.example/steal", "code_challenge": challenge},
        headers=kai.headers,
    )
    assert assert_problem(bad, 400)["errors"][0]["loc"] == ["body", "redirect_uri"]
    extra = await client.post(
        f"{START}/keycloak",
        json={"redirect_uri": APP_REDIRECT, "code_challenge": challenge, "password": "x"},
        headers=kai.headers,
    )
    assert_problem(extra, 422)
    for missing in ({"redirect_uri": APP_REDIRECT}, {"code_challenge": challenge}):
        no_field = await client.post(f"{START}/keycloak", json=missing, headers=kai.headers)
        assert_problem(no_field, 422)
    plain = {"redirect_uri": APP_REDIRECT, "code_challenge": challenge}
    plain["code_challenge_method"] = "plain"
    assert_problem(await client.post(f"{START}/keycloak", json=plain, headers=kai.headers), 422)
    anonymous = await client.post(
        f"{START}/keycloak", json=plain | {"code_challenge_method": "S256"}
    )
    assert_problem(anonymous, 401)
    verifier = Pkce.new().verifier
    assert_problem(await client.post(START, json={"code": "x", "code_verifier": verifier}), 401)
    assert_problem(await client.post(START, json={"code": "x"}, headers=kai.headers), 422)
    too_long = {"code": "x" * 129, "code_verifier": verifier}
    assert_problem(await client.post(START, json=too_long, headers=kai.headers), 422)


async def test_an_authentication_older_than_the_confirmation_is_refused(
    client: httpx2.AsyncClient, container: Container
) -> None:
    """The real provider's ID token says when it authenticated the user (``auth_time``): one
    from before the confirmation started is refused. (The flow is dated an hour later here, as
    if the provider had answered from an old sign-in.)"""
    lou = await sign_in(client, "keycloak", "lou")
    provider_url = await _to_provider(client, lou, "keycloak")
    async with container.db.unit_of_work() as session:
        await session.execute(
            update(OAuthAuthorization)
            .where(OAuthAuthorization.intent == "reauth")
            .values(created_at=utcnow() + timedelta(hours=1))
        )
    back = await back_to_app(client, await through_provider(provider_url, "lou"))
    assert "did not ask you to sign in again" in assert_problem(back, 400)["detail"]
    assert await _confirmed(container, int(lou.me["id"])) == [False]
