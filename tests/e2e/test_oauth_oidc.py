"""Sign-in through a real OpenID Connect provider (`oidc-provider`, run by Node), configured
both as the generic ``keycloak`` provider and as ``google``; on SQLite and PostgreSQL.

Every refusal is problem+json and creates no session.
"""

from __future__ import annotations

import time
from http.cookiejar import Cookie
from pathlib import Path

import httpx2
import pyotp
import pytest
from sqlalchemy import select

from tests.conftest import make_settings
from tests.oidc.fixtures import (  # noqa: F401 (fixtures)
    APP_REDIRECT,
    MOBILE_REDIRECT,
    QUERY_REDIRECT,
    oidc_provider,
    provider_settings,
)
from tests.oidc.flows import (
    Pkce,
    audit_actions,
    authorize,
    back_to_app,
    exchange,
    expire_login_codes,
    identity_rows,
    mail_subjects,
    query_of,
    session_count,
    sign_in,
    step_up,
    through_provider,
    to_provider,
    unlink,
    user_count,
)
from tests.oidc.harness import OIDCProvider
from tests.support.api import DEFAULT_PASSWORD, assert_problem, login, make_admin, register
from tidings.audit.models import AuditEvent
from tidings.auth.models import AuthSession
from tidings.auth.providers.crypto import STATE_COOKIE
from tidings.core.container import Container
from tidings.settings import Settings


@pytest.fixture
def settings(tmp_path: Path, database_url: str, oidc_provider: OIDCProvider) -> Settings:  # noqa: F811
    return make_settings(  # mail stays queued, for the tests to read
        tmp_path / "data",
        database_url,
        mail_interval_seconds=3600,
        **provider_settings(oidc_provider),
    )


def _state_cookie(client: httpx2.AsyncClient) -> Cookie:
    return next(c for c in client.cookies.jar if c.name == STATE_COOKIE)


async def _code_for(
    client: httpx2.AsyncClient, provider: str, login: str, pkce: Pkce | None
) -> str:
    provider_url = await to_provider(client, provider, pkce=pkce)
    back = await back_to_app(client, await through_provider(provider_url, login))
    assert back.status_code == 302, back.text
    return query_of(back.headers["location"])["code"]


# --- happy paths ------------------------------------------------------------------------------


async def test_providers_are_listed(client: httpx2.AsyncClient) -> None:
    response = await client.get("/api/v1/auth/providers")
    assert response.status_code == 200
    listed = {p["name"]: p for p in response.json()["data"]}
    assert set(listed) == {"google", "keycloak"}
    assert listed["google"] == {
        "name": "google",
        "type": "google",
        "display_name": "Google",
        "authorize_url": "/api/v1/auth/google/authorize",
    }
    assert listed["keycloak"]["type"] == "oidc"
    assert listed["keycloak"]["display_name"] == "Keycloak"


async def test_a_new_user_signs_in_with_the_generic_provider(
    client: httpx2.AsyncClient,
    container: Container,
    oidc_provider: OIDCProvider,  # noqa: F811
) -> None:
    provider_url = await to_provider(client, "keycloak", pkce=Pkce.new())
    query = query_of(provider_url)
    assert provider_url.startswith(oidc_provider.issuer + "/auth?")
    assert query["code_challenge_method"] == "S256"
    assert query["redirect_uri"] == "http://testserver/api/v1/auth/keycloak/callback"
    assert query["nonce"]
    assert query["state"]
    assert query["scope"] == "openid email profile"
    cookie = _state_cookie(client)
    assert cookie.path == "/api/v1/auth/"
    assert cookie.has_nonstandard_attr("HttpOnly")
    assert cookie.expires is not None

    alice = await sign_in(client, "keycloak", "alice")
    assert alice.me["username"] == "alice"
    assert alice.me["email"] == "alice@example.com"
    assert alice.me["email_verified"] is True
    user_id = int(alice.me["id"])
    assert await audit_actions(container, user_id) == [
        "account:registered",
        "identity:linked",
        "identity:login",
    ]
    listed = await client.get("/api/v1/me/identities", headers=alice.headers)
    assert listed.status_code == 200
    [identity] = listed.json()["data"]
    assert identity["provider"] == "keycloak"
    assert identity["email"] == "alice@example.com"
    assert "token" not in listed.text  # provider tokens are never returned

    again = await sign_in(client, "keycloak", "alice")
    assert again.me["id"] == alice.me["id"]
    assert await session_count(container) == 2


async def test_provider_tokens_are_kept_only_encrypted(
    client: httpx2.AsyncClient, container: Container
) -> None:
    bea = await sign_in(client, "google", "bea")
    [row] = await identity_rows(container, int(bea.me["id"]))
    assert row.subject == "bea"
    assert row.access_token_encrypted is not None
    assert container.oauth is not None
    plaintext = container.oauth.cipher.decrypt(row.access_token_encrypted)
    assert plaintext
    assert plaintext not in row.access_token_encrypted


async def test_the_same_verified_email_joins_the_account_across_providers(
    client: httpx2.AsyncClient, container: Container
) -> None:
    via_google = await sign_in(client, "google", "cleo")
    via_keycloak = await sign_in(client, "keycloak", "cleo")
    assert via_keycloak.me["id"] == via_google.me["id"]
    rows = await identity_rows(container, int(via_google.me["id"]))
    assert sorted(r.provider for r in rows) == ["google", "keycloak"]


async def test_a_verified_local_account_is_linked_by_email(
    client: httpx2.AsyncClient, container: Container
) -> None:
    await make_admin(container, "dora")  # create-admin marks the email verified
    local = await login(client, "dora")
    via_google = await sign_in(client, "google", "dora")
    assert via_google.me["id"] == local.user_id
    # a new way into the account: its address is told
    assert await mail_subjects(container, "dora@example.com") == [
        "A sign-in method was added to your account"
    ]


async def test_mobile_redirect_and_app_state_come_back(client: httpx2.AsyncClient) -> None:
    pkce = Pkce.new()
    provider_url = await to_provider(
        client, "google", redirect_uri=MOBILE_REDIRECT, pkce=pkce, state="app-xyz"
    )
    back = await back_to_app(client, await through_provider(provider_url, "emil"))
    location = back.headers["location"]
    assert location.startswith(MOBILE_REDIRECT + "?code=")
    assert query_of(location)["state"] == "app-xyz"
    assert "access_token" not in location
    tokens = await exchange(client, query_of(location)["code"], pkce.verifier)
    assert tokens.status_code == 200, tokens.text

    provider_url = await to_provider(client, "google", redirect_uri=QUERY_REDIRECT)
    back = await back_to_app(client, await through_provider(provider_url, "emil"))
    location = back.headers["location"]
    assert location.startswith("https://app.example.com/cb?tenant=blue&code=")
    assert (await exchange(client, query_of(location)["code"])).status_code == 200


async def test_an_account_from_a_provider_may_set_a_password_later(
    client: httpx2.AsyncClient, container: Container
) -> None:
    fay = await sign_in(client, "keycloak", "fay")
    last = await unlink(client, fay, "keycloak")
    assert "last way to sign in" in assert_problem(last, 409)["detail"]
    wrong = await client.post(
        "/api/v1/me/password", json={"new_password": "short"}, headers=fay.headers
    )
    assert_problem(wrong, 422)
    first = {"new_password": DEFAULT_PASSWORD}
    token_alone = await client.post("/api/v1/me/password", json=first, headers=fay.headers)
    assert "confirm it is you" in assert_problem(token_alone, 403)["detail"]
    assert (await step_up(client, fay, "keycloak", "fay")).status_code == 200
    set_password = await client.post("/api/v1/me/password", json=first, headers=fay.headers)
    assert set_password.status_code == 204, set_password.text
    fay_again = await login(client, "fay")
    assert fay_again.user_id == fay.me["id"]
    url = "/api/v1/me/identities/keycloak"
    no_body = await client.delete(url, headers=fay_again.headers)
    assert assert_problem(no_body, 422)["errors"][0]["loc"] == ["body"]
    wrong = await client.request(
        "DELETE", url, json={"password": "not-fays-password"}, headers=fay_again.headers
    )
    assert assert_problem(wrong, 422)["errors"][0]["msg"] == "does not match"
    listed = await client.get("/api/v1/me/identities", headers=fay_again.headers)
    assert [i["provider"] for i in listed.json()["data"]] == ["keycloak"]  # still linked
    assert "auth:reauth_failed" in await audit_actions(container, int(fay.me["id"]))
    unlinked = await unlink(client, fay_again, "keycloak")
    assert unlinked.status_code == 204
    # With a password now, the current one is required to change it.
    missing = await client.post(
        "/api/v1/me/password", json={"new_password": "another-password"}, headers=fay_again.headers
    )
    assert_problem(missing, 422)


# --- state ------------------------------------------------------------------------------------


async def test_a_missing_state_cookie_is_refused(
    client: httpx2.AsyncClient, container: Container
) -> None:
    callback = await through_provider(await to_provider(client, "google"), "gil")
    client.cookies.clear()
    body = assert_problem(await back_to_app(client, callback), 400)
    assert "cookie is missing" in body["detail"]
    assert await session_count(container) == 0
    assert await user_count(container) == 0


async def test_a_replayed_state_is_refused(
    client: httpx2.AsyncClient, container: Container
) -> None:
    callback = await through_provider(await to_provider(client, "google"), "hal")
    cookie = _state_cookie(client)
    first = await back_to_app(client, callback)
    assert first.status_code == 302
    assert STATE_COOKIE not in client.cookies  # the callback clears it
    client.cookies.jar.set_cookie(cookie)
    body = assert_problem(await back_to_app(client, callback), 400)
    assert "already completed" in body["detail"]
    assert await session_count(container) == 0  # the first code was never exchanged


async def test_a_forged_state_is_refused(client: httpx2.AsyncClient, container: Container) -> None:
    callback = await through_provider(await to_provider(client, "google"), "ida")
    forged = callback.replace("state=", "state=x")
    assert "does not match" in assert_problem(await back_to_app(client, forged), 400)["detail"]
    no_state = "&".join(p for p in callback.split("&") if not p.startswith("state="))
    assert_problem(await back_to_app(client, no_state), 400)

    cookie = _state_cookie(client)
    cookie.value = cookie.value[:-4] + ("AAAA" if not cookie.value.endswith("AAAA") else "BBBB")
    client.cookies.jar.set_cookie(cookie)
    assert (
        "invalid or expired" in assert_problem(await back_to_app(client, callback), 400)["detail"]
    )

    # A cookie from another provider's flow does not fit this callback either.
    await to_provider(client, "keycloak")
    assert "another provider" in assert_problem(await back_to_app(client, callback), 400)["detail"]
    assert await session_count(container) == 0


async def test_a_wrong_iss_or_a_provider_error_is_refused_and_burns_the_state(
    client: httpx2.AsyncClient, container: Container
) -> None:
    callback = await through_provider(await to_provider(client, "google"), "jo")
    mixed_up = callback.replace("iss=", "iss=https%3A%2F%2Fevil.example")
    assert "another issuer" in assert_problem(await back_to_app(client, mixed_up), 400)["detail"]
    assert_problem(await back_to_app(client, callback), 400)  # state already used

    provider_url = await to_provider(client, "google")
    state = query_of(provider_url)["state"]
    denied = f"/api/v1/auth/google/callback?error=access_denied&state={state}"
    assert "access_denied" in assert_problem(await client.get(denied), 400)["detail"]
    assert await session_count(container) == 0
    assert await user_count(container) == 0


# --- redirect URIs ----------------------------------------------------------------------------


NOT_REGISTERED = [
    "https://evil.example/auth/done",  # not on the list
    "https://app.example.com/auth/other",  # another path
    "https://app.example.com/auth/done?next=/admin",  # an added query
    "https://app.example.com/auth/done/",  # a trailing slash
    "https://app.example.com/cb",  # a registered URI's query left out
    "https://app.example.com/cb?tenant=red",  # ... or changed
    "HTTPS://APP.EXAMPLE.COM/auth/done",  # not the same string
    "https://app.example.com/auth/done#frag",
    "https://app.example.com.evil.example/auth/done",
    "com.example.tidings:/oauth2redirect/../evil",
]


async def test_a_redirect_uri_must_match_exactly(
    client: httpx2.AsyncClient, container: Container
) -> None:
    for redirect_uri in NOT_REGISTERED:
        response = await authorize(client, "google", redirect_uri=redirect_uri)
        body = assert_problem(response, 400)
        assert "redirect_uri" in body["detail"], redirect_uri
        assert "location" not in response.headers
        assert STATE_COOKIE not in client.cookies
    assert await session_count(container) == 0


async def test_bad_authorize_requests_are_problems(client: httpx2.AsyncClient) -> None:
    assert_problem(await authorize(client, "google"), 400)  # no redirect_uri
    assert_problem(await authorize(client, "github", redirect_uri=APP_REDIRECT), 404)
    assert_problem(await authorize(client, "Not A Name", redirect_uri=APP_REDIRECT), 422)
    pkce = Pkce.new()
    plain = await authorize(
        client,
        "google",
        redirect_uri=APP_REDIRECT,
        code_challenge=pkce.challenge,
        code_challenge_method="plain",
    )
    assert_problem(plain, 400)
    no_method = await authorize(
        client, "google", redirect_uri=APP_REDIRECT, code_challenge=pkce.challenge
    )
    assert_problem(no_method, 400)
    short = await authorize(
        client,
        "google",
        redirect_uri=APP_REDIRECT,
        code_challenge="abc",
        code_challenge_method="S256",
    )
    assert_problem(short, 422)


# --- the login code ---------------------------------------------------------------------------


async def test_a_pkce_verifier_mismatch_is_refused(
    client: httpx2.AsyncClient, container: Container
) -> None:
    pkce = Pkce.new()
    code = await _code_for(client, "google", "kai", pkce)
    for verifier in (Pkce.new().verifier, None):
        body = assert_problem(await exchange(client, code, verifier), 400)
        assert body["error"] == "invalid_grant"
    assert await session_count(container) == 0
    assert (await exchange(client, code, pkce.verifier)).status_code == 200

    code = await _code_for(client, "google", "kai", None)
    body = assert_problem(await exchange(client, code, Pkce.new().verifier), 400)
    assert "No code_challenge" in body["detail"]
    assert await session_count(container) == 1


async def test_a_login_code_works_once(client: httpx2.AsyncClient, container: Container) -> None:
    pkce = Pkce.new()
    code = await _code_for(client, "google", "lea", pkce)
    first = await exchange(client, code, pkce.verifier)
    assert first.status_code == 200, first.text
    assert await session_count(container) == 1
    body = assert_problem(await exchange(client, code, pkce.verifier), 400)
    assert body["error"] == "invalid_grant"
    assert await session_count(container) == 1
    # The replay revoked the session the first exchange started (RFC 6749 10.5) ...
    headers = {"Authorization": f"Bearer {first.json()['access_token']}"}
    assert_problem(await client.get("/api/v1/me", headers=headers), 401)
    # ... and is in the audit trail, naming that session and the provider
    stmt = select(AuditEvent).where(AuditEvent.action == "identity:login_code_reuse_detected")
    async with container.db.unit_of_work(write=False) as session:
        [event] = (await session.execute(stmt)).scalars()
        [signed_in] = (await session.execute(select(AuthSession))).scalars()
    assert (event.target_type, event.target_id) == ("session", str(signed_in.id))
    assert event.actor_id == signed_in.user_id
    assert event.details["provider"] == "google"


async def test_an_expired_or_unknown_login_code_is_refused(
    client: httpx2.AsyncClient, container: Container
) -> None:
    pkce = Pkce.new()
    code = await _code_for(client, "google", "max", pkce)
    await expire_login_codes(container)
    assert (
        assert_problem(await exchange(client, code, pkce.verifier), 400)["error"] == "invalid_grant"
    )
    assert_problem(await exchange(client, "not-a-code"), 400)
    code = await _code_for(client, "google", "max", pkce)
    wrong_redirect = await exchange(client, code, pkce.verifier, redirect_uri=MOBILE_REDIRECT)
    assert assert_problem(wrong_redirect, 400)["error"] == "invalid_grant"
    assert await session_count(container) == 0


# --- email rules ------------------------------------------------------------------------------


async def test_google_email_verified_false_creates_and_joins_nothing(
    client: httpx2.AsyncClient, container: Container
) -> None:
    # The provider says email_verified=false for logins starting "unverified_".
    callback = await through_provider(await to_provider(client, "google"), "unverified_nia")
    body = assert_problem(await back_to_app(client, callback), 403)
    assert "verified email" in body["detail"]
    assert await user_count(container) == 0

    await make_admin(container, "unverified_ole")  # a verified local account, same address
    local = await login(client, "unverified_ole")
    callback = await through_provider(await to_provider(client, "google"), "unverified_ole")
    assert_problem(await back_to_app(client, callback), 403)
    assert await identity_rows(container, int(local.user_id)) == []
    assert await session_count(container) == 1  # only the password sign-in above


async def test_an_unverified_local_account_is_not_taken_over(
    client: httpx2.AsyncClient, container: Container
) -> None:
    created = await register(client, "pia")  # pia@example.com, email_verified false
    assert created["email_verified"] is False
    callback = await through_provider(await to_provider(client, "google"), "pia")
    body = assert_problem(await back_to_app(client, callback), 409)
    assert "pia@example.com" in body["detail"]
    assert await identity_rows(container, int(created["id"])) == []
    assert await user_count(container) == 1
    assert await session_count(container) == 0


async def test_two_step_sign_in_applies_to_provider_sign_ins(
    client: httpx2.AsyncClient, container: Container
) -> None:
    """An account with two-step sign-in on needs its code after the provider too: without it
    the login code stays usable (the app asks, then sends both); a wrong one spends it."""
    gil = await sign_in(client, "keycloak", "gil")
    assert (await step_up(client, gil, "keycloak", "gil")).status_code == 200
    proof = {"confirm_username": "gil"}
    started = await client.post("/api/v1/me/mfa/totp", json=proof, headers=gil.headers)
    assert started.status_code == 200, started.text
    totp = pyotp.TOTP(started.json()["secret"])
    confirm = {"code": totp.now()}
    confirmed = await client.post("/api/v1/me/mfa/totp/confirm", json=confirm, headers=gil.headers)
    assert confirmed.status_code == 200, confirmed.text
    recovery = confirmed.json()["recovery_codes"]

    pkce = Pkce.new()
    code = await _code_for(client, "keycloak", "gil", pkce)
    missing = await exchange(client, code, pkce.verifier)
    assert assert_problem(missing, 400)["error"] == "mfa_required"
    nxt = str(totp.at(time.time() + 30))
    done = await exchange(client, code, pkce.verifier, otp=nxt)  # the same login code
    assert done.status_code == 200, done.text

    pkce = Pkce.new()
    code = await _code_for(client, "keycloak", "gil", pkce)
    wrong = await exchange(client, code, pkce.verifier, otp="000000")
    if wrong.status_code == 200:
        pytest.skip("000000 happened to be a valid code")
    assert assert_problem(wrong, 400)["error"] == "invalid_grant"
    spent = await exchange(client, code, pkce.verifier, otp=recovery[0])  # a good code now
    assert assert_problem(spent, 400)["error"] == "invalid_grant"
    assert (await client.get("/api/v1/me/mfa", headers=gil.headers)).json()[
        "recovery_codes_left"
    ] == 10  # the spent login code used nothing up
