"""Two-step sign-in (TOTP, RFC 6238) through the API, on SQLite and PostgreSQL: turning it on
(the holder's proof, a first code, ten recovery codes, the other sessions signed out),
signing in with a code or a recovery code (each once), refusals that create no session,
turning it off, an admin turning it off, and the mails and audit events."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx2
import pyotp
import pytest
from sqlalchemy import func, select, update

from tests.conftest import make_settings
from tests.e2e.test_rate_limits import _within_one_window, limited_client
from tests.oidc.flows import audit_actions, mail_subjects
from tests.support.api import (
    DEFAULT_PASSWORD,
    SignedIn,
    assert_problem,
    login,
    make_admin,
    sign_up,
)
from tidings.auth.models import AuthSession
from tidings.core.container import Container
from tidings.core.security import hash_token
from tidings.mfa.models import MfaRecoveryCode, MfaTotp
from tidings.mfa.service import recovery_hash
from tidings.settings import Settings

MFA = "/api/v1/me/mfa"


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    # mail stays queued, for the tests to read
    return make_settings(tmp_path / "data", database_url, mail_interval_seconds=3600)


def _grant(username: str, **extra: str) -> dict[str, str]:
    return {"grant_type": "password", "username": username, "password": DEFAULT_PASSWORD, **extra}


async def _sessions(container: Container) -> int:
    async with container.db.unit_of_work(write=False) as session:
        return int(await session.scalar(select(func.count()).select_from(AuthSession)) or 0)


async def _turn_on(client: httpx2.AsyncClient, who: SignedIn) -> tuple[pyotp.TOTP, list[str]]:
    started = await client.post(
        f"{MFA}/totp", json={"password": DEFAULT_PASSWORD}, headers=who.headers
    )
    assert started.status_code == 200, started.text
    totp = pyotp.TOTP(started.json()["secret"])
    assert started.json()["otpauth_uri"].startswith("otpauth://totp/Tidings:")
    confirmed = await client.post(
        f"{MFA}/totp/confirm", json={"code": totp.now()}, headers=who.headers
    )
    assert confirmed.status_code == 200, confirmed.text
    return totp, confirmed.json()["recovery_codes"]


def _next_code(totp: pyotp.TOTP) -> str:
    """The code of the next 30-second step: the current one was used to confirm."""
    return str(totp.at(time.time() + 30))


async def test_turn_on_sign_in_with_codes_once_and_turn_off(
    client: httpx2.AsyncClient, container: Container
) -> None:
    ana = await sign_up(client, "ana")
    elsewhere = await login(client, "ana")
    assert (await client.get(MFA, headers=ana.headers)).json()["enabled"] is False
    no_proof = await client.post(f"{MFA}/totp", json={}, headers=ana.headers)
    assert assert_problem(no_proof, 422)["errors"][0]["loc"] == ["body", "password"]
    started = await client.post(
        f"{MFA}/totp", json={"password": DEFAULT_PASSWORD}, headers=ana.headers
    )
    wrong = await client.post(f"{MFA}/totp/confirm", json={"code": "000000"}, headers=ana.headers)
    if pyotp.TOTP(started.json()["secret"]).verify("000000", valid_window=1):
        pytest.skip("000000 happens to be the code now")
    assert assert_problem(wrong, 422)["errors"][0]["loc"] == ["body", "code"]
    # still off: signing in needs no code
    assert (await client.post("/api/v1/auth/token", data=_grant("ana"))).status_code == 200

    totp, codes = await _turn_on(client, ana)
    assert len(set(codes)) == 10
    assert_problem(await client.get("/api/v1/me", headers=elsewhere.headers), 401)  # signed out
    assert (await client.get("/api/v1/me", headers=ana.headers)).status_code == 200
    status = (await client.get(MFA, headers=ana.headers)).json()
    assert (status["enabled"], status["recovery_codes_left"]) == (True, 10)

    before = await _sessions(container)
    missing = await client.post("/api/v1/auth/token", data=_grant("ana"))
    assert assert_problem(missing, 400)["error"] == "mfa_required"
    bad = await client.post("/api/v1/auth/token", data=_grant("ana", otp="123456"))
    assert assert_problem(bad, 400)["error"] == "invalid_grant"
    assert await _sessions(container) == before  # no session from either
    code = _next_code(totp)
    signed = await client.post("/api/v1/auth/token", data=_grant("ana", otp=code))
    assert signed.status_code == 200, signed.text
    replayed = await client.post("/api/v1/auth/token", data=_grant("ana", otp=code))
    assert assert_problem(replayed, 400)["error"] == "invalid_grant"  # each step once
    recovered = await client.post("/api/v1/auth/token", data=_grant("ana", otp=codes[0].upper()))
    assert recovered.status_code == 200, recovered.text
    again = await client.post("/api/v1/auth/token", data=_grant("ana", otp=codes[0]))
    assert assert_problem(again, 400)["error"] == "invalid_grant"
    assert (await client.get(MFA, headers=ana.headers)).json()["recovery_codes_left"] == 9

    off: dict[str, Any] = {"password": DEFAULT_PASSWORD, "code": "999999"}
    refused = await client.request("DELETE", MFA, json=off, headers=ana.headers)
    assert assert_problem(refused, 422)["errors"][0]["loc"] == ["body", "code"]
    off["code"] = codes[1]
    assert (await client.request("DELETE", MFA, json=off, headers=ana.headers)).status_code == 204
    assert (await client.post("/api/v1/auth/token", data=_grant("ana"))).status_code == 200

    actions = await audit_actions(container, int(ana.user_id))
    for action in (
        "account:mfa_enabled",
        "auth:mfa_failed",
        "auth:mfa_recovery_code_used",
        "account:mfa_disabled",
    ):
        assert action in actions, actions
    assert await mail_subjects(container, "ana@example.com") == [
        "Two-step sign-in was turned on",
        "A recovery code was used to sign in",
        "Two-step sign-in was turned off",
    ]


async def test_turning_on_twice_or_off_when_off_is_refused(client: httpx2.AsyncClient) -> None:
    bob = await sign_up(client, "bob")
    nothing = await client.post(f"{MFA}/totp/confirm", json={"code": "123456"}, headers=bob.headers)
    assert "Start with" in assert_problem(nothing, 409)["detail"]
    off = {"password": DEFAULT_PASSWORD, "code": "123456"}
    assert_problem(await client.request("DELETE", MFA, json=off, headers=bob.headers), 404)
    await _turn_on(client, bob)
    twice = await client.post(
        f"{MFA}/totp", json={"password": DEFAULT_PASSWORD}, headers=bob.headers
    )
    assert "already on" in assert_problem(twice, 409)["detail"]
    for bad in ({"code": ""}, {"code": "1" * 33}, {}):
        assert_problem(await client.post(f"{MFA}/totp/confirm", json=bad, headers=bob.headers), 422)


async def test_an_admin_turns_it_off_for_a_lost_authenticator(
    client: httpx2.AsyncClient, container: Container
) -> None:
    cyd = await sign_up(client, "cyd")
    await _turn_on(client, cyd)
    await make_admin(container, "root_admin")
    admin = await login(client, "root_admin")
    url, proof = "/api/v1/admin/users/cyd/mfa", {"password": DEFAULT_PASSWORD}
    refused = await client.request("DELETE", url, json=proof, headers=cyd.headers)
    assert_problem(refused, 403)
    # a stolen admin token alone strips no one's second step: the admin's own password
    for body, why in (({}, "field required"), ({"password": "not-it"}, "does not match")):
        unproven = await client.request("DELETE", url, json=body, headers=admin.headers)
        error = assert_problem(unproven, 422)["errors"][0]
        assert (error["loc"], error["msg"]) == (["body", "password"], why), unproven.text
    assert (await client.get(MFA, headers=cyd.headers)).json()["enabled"] is True
    done = await client.request("DELETE", url, json=proof, headers=admin.headers)
    assert done.status_code == 204, done.text
    assert (await client.post("/api/v1/auth/token", data=_grant("cyd"))).status_code == 200
    again = await client.request("DELETE", url, json=proof, headers=admin.headers)
    assert_problem(again, 404)
    assert "account:mfa_disabled" in await audit_actions(container, int(admin.user_id))
    assert (await mail_subjects(container, "cyd@example.com"))[-1] == (
        "Two-step sign-in was turned off"
    )


async def test_deleting_the_account_drops_its_authenticator(
    client: httpx2.AsyncClient, container: Container
) -> None:
    dee = await sign_up(client, "dee")
    await _turn_on(client, dee)
    deleted = await client.request(
        "DELETE", "/api/v1/me", json={"password": DEFAULT_PASSWORD}, headers=dee.headers
    )
    assert deleted.status_code == 202, deleted.text
    async with container.db.unit_of_work(write=False) as session:
        for table in (MfaTotp, MfaRecoveryCode):
            left = await session.scalar(
                select(func.count()).select_from(table).where(table.user_id == int(dee.user_id))
            )
            assert left == 0, table.__tablename__


async def test_odd_codes_are_refusals_not_errors(client: httpx2.AsyncClient) -> None:
    """Digits of other scripts pass str.isdigit(): they are wrong codes, not a crash."""
    eve = await sign_up(client, "eve")
    totp, _codes = await _turn_on(client, eve)
    for i, odd in enumerate(("١٢٣٤٥٦", "²³⁴⁵⁶⁷", "12345٦", "abcdef", "12 34 5")):
        if i < 3:  # the sign-in lockout allows five failures: the right code comes after
            refused = await client.post("/api/v1/auth/token", data=_grant("eve", otp=odd))
            assert assert_problem(refused, 400)["error"] == "invalid_grant", odd
        off = {"password": DEFAULT_PASSWORD, "code": odd}
        assert_problem(await client.request("DELETE", MFA, json=off, headers=eve.headers), 422)
    spaced = _next_code(totp)
    spaced = f"{spaced[:3]} {spaced[3:]}"  # as an app shows it
    signed = await client.post("/api/v1/auth/token", data=_grant("eve", otp=spaced))
    assert signed.status_code == 200, signed.text


async def test_an_unreadable_secret_leaves_the_recovery_codes(
    client: httpx2.AsyncClient, container: Container
) -> None:
    """Encryption keys changed without the old one: the authenticator's codes no longer work
    (refused, not a 500), recovery codes still do, and the holder can turn it off."""
    fay = await sign_up(client, "fay")
    totp, codes = await _turn_on(client, fay)
    async with container.db.unit_of_work() as session:
        await session.execute(update(MfaTotp).values(secret_encrypted="sealed-by-a-lost-key"))
    lost = await client.post("/api/v1/auth/token", data=_grant("fay", otp=_next_code(totp)))
    assert assert_problem(lost, 400)["error"] == "invalid_grant"
    rescued = await client.post("/api/v1/auth/token", data=_grant("fay", otp=codes[0]))
    assert rescued.status_code == 200, rescued.text
    off = {"password": DEFAULT_PASSWORD, "code": codes[1]}
    assert (await client.request("DELETE", MFA, json=off, headers=fay.headers)).status_code == 204


async def test_wrong_codes_lock_the_second_step_per_account(
    tmp_path: Path, database_url: str
) -> None:
    await _within_one_window(15 * 60)
    limits = {"mfa_lockout": "3/15 minutes"}
    async with limited_client(tmp_path, database_url, rate_limits=limits) as client:
        gus = await sign_up(client, "gus")
        _totp, codes = await _turn_on(client, gus)
        for i in range(3):  # bounded
            wrong = await client.post("/api/v1/auth/token", data=_grant("gus", otp=f"00000{i}"))
            assert assert_problem(wrong, 400)["error"] == "invalid_grant"
        locked = await client.post("/api/v1/auth/token", data=_grant("gus", otp=codes[0]))
        assert "wrong one-time codes" in assert_problem(locked, 429)["detail"]


async def test_new_recovery_codes_replace_the_old_ones(
    client: httpx2.AsyncClient, container: Container
) -> None:
    hal = await sign_up(client, "hal")
    totp, old = await _turn_on(client, hal)
    url = f"{MFA}/recovery-codes"
    wrong = {"password": DEFAULT_PASSWORD, "code": "abcde-fghjk"}
    refused = await client.post(url, json=wrong, headers=hal.headers)
    assert assert_problem(refused, 422)["errors"][0]["loc"] == ["body", "code"]
    no_proof = await client.post(url, json={"code": old[0]}, headers=hal.headers)
    assert_problem(no_proof, 422)
    body = {"password": DEFAULT_PASSWORD, "code": _next_code(totp)}
    made = await client.post(url, json=body, headers=hal.headers)
    assert made.status_code == 200, made.text
    new = made.json()["recovery_codes"]
    assert len(new) == 10
    assert not set(new) & set(old)
    stale = await client.post("/api/v1/auth/token", data=_grant("hal", otp=old[1]))
    assert assert_problem(stale, 400)["error"] == "invalid_grant"
    fresh = await client.post("/api/v1/auth/token", data=_grant("hal", otp=new[0]))
    assert fresh.status_code == 200, fresh.text
    assert "account:mfa_recovery_codes_replaced" in await audit_actions(container, int(hal.user_id))
    assert "New recovery codes were made" in await mail_subjects(container, "hal@example.com")


async def test_recovery_codes_are_kept_salted(
    client: httpx2.AsyncClient, container: Container
) -> None:
    """A set of ten shares one random salt and is kept as scrypt, not as the plain SHA-256 a
    leaked table could be searched against (tests/integration/test_recovery_code_migration.py
    wraps sets kept so before)."""
    ivy = await sign_up(client, "ivy")
    _totp, codes = await _turn_on(client, ivy)
    async with container.db.unit_of_work(write=False) as session:
        rows = (await session.scalars(select(MfaRecoveryCode))).all()
    assert len(rows) == 10
    assert len({r.salt for r in rows}) == 1
    plain = {hash_token(c.replace("-", "")) for c in codes}
    assert not plain & {r.code_hash for r in rows}
    assert {r.code_hash for r in rows} == {
        recovery_hash(p, rows[0].salt) for p in (c.replace("-", "") for c in codes)
    }
    fresh = await client.post("/api/v1/auth/token", data=_grant("ivy", otp=codes[2]))
    assert fresh.status_code == 200, fresh.text


async def test_an_admin_turns_off_only_others_second_step(
    client: httpx2.AsyncClient, container: Container
) -> None:
    """An admin's own goes with one of its codes (DELETE /api/v1/me/mfa): a stolen admin
    token and password must not strip it and enrol another authenticator."""
    await make_admin(container, "root_admin")
    admin = await login(client, "root_admin")
    await _turn_on(client, admin)
    own = await client.request(
        "DELETE",
        "/api/v1/admin/users/root_admin/mfa",
        json={"password": DEFAULT_PASSWORD},
        headers=admin.headers,
    )
    assert "DELETE /api/v1/me/mfa" in assert_problem(own, 409)["detail"]
    assert (await client.get(MFA, headers=admin.headers)).json()["enabled"] is True
