"""Staff powers need two-step sign-in (the default, ``TIDINGS_STAFF_MFA=required``; ASVS 4.0
V4.3.1): a moderator or admin whose account has no second factor acts as a user — at the
route (a 403 of its own kind, saying what to do) and in the services (no deleting others'
posts) — until it is turned on, and again once it is turned off. On SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import httpx2
import pyotp
import pytest

from tests.conftest import make_settings
from tests.support.api import (
    DEFAULT_PASSWORD,
    SignedIn,
    assert_problem,
    login,
    make_admin,
    sign_up,
)
from tests.support.processes import app_client
from tidings.core.container import Container
from tidings.settings import Settings

MFA = "/api/v1/me/mfa"


def test_required_is_the_default() -> None:
    """The suites run with ``optional`` (tests/conftest.py); a deployment gets ``required``."""
    assert Settings.model_fields["staff_mfa"].default == "required"


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return make_settings(tmp_path / "data", database_url, staff_mfa="required")


async def _turn_on(client: httpx2.AsyncClient, who: SignedIn) -> None:
    proof = {"password": DEFAULT_PASSWORD}
    started = await client.post(f"{MFA}/totp", json=proof, headers=who.headers)
    assert started.status_code == 200, started.text
    code = pyotp.TOTP(started.json()["secret"]).now()
    confirmed = await client.post(f"{MFA}/totp/confirm", json={"code": code}, headers=who.headers)
    assert confirmed.status_code == 200, confirmed.text


def _needs_second_factor(response: httpx2.Response, role: str) -> None:
    body = assert_problem(response, 403)
    assert body["type"].endswith("/second-factor-required"), body
    assert f"{role} powers need two-step sign-in" in body["detail"], body


async def _post(client: httpx2.AsyncClient, who: SignedIn, text: str) -> str:
    made = await client.post("/api/v1/posts", json={"text": text}, headers=who.headers)
    assert made.status_code == 201, made.text
    return str(made.json()["id"])


async def test_staff_powers_wait_for_two_step_sign_in(
    client: httpx2.AsyncClient, container: Container
) -> None:
    await make_admin(container, "root_admin")
    admin = await login(client, "root_admin")
    ann = await sign_up(client, "ann")
    first = await _post(client, ann, "first")

    # an admin without a second factor: a user, at the route and in the service
    _needs_second_factor(await client.get("/api/v1/admin/users", headers=admin.headers), "admin")
    plain = assert_problem(await client.get("/api/v1/admin/users", headers=ann.headers), 403)
    assert plain["type"].endswith("/forbidden"), plain  # a user is told nothing about staff
    removed = await client.delete(f"/api/v1/posts/{first}", headers=admin.headers)
    _needs_second_factor(removed, "admin")  # the service's own check says so too
    assert (await client.get(f"/api/v1/posts/{first}", headers=ann.headers)).status_code == 200

    # turned on from the same session: the same token now carries the powers
    await _turn_on(client, admin)
    listed = await client.get("/api/v1/admin/users", headers=admin.headers)
    assert listed.status_code == 200, listed.text
    removed = await client.delete(f"/api/v1/posts/{first}", headers=admin.headers)
    assert removed.status_code == 204, removed.text

    # a new moderator has the role but not yet its powers
    made = await client.patch(
        "/api/v1/admin/users/ann", json={"role": "moderator"}, headers=admin.headers
    )
    assert made.status_code == 200, made.text
    assert made.json()["role"] == "moderator"
    _needs_second_factor(
        await client.get("/api/v1/moderation/reports", headers=ann.headers), "moderator"
    )
    await _turn_on(client, ann)
    queue = await client.get("/api/v1/moderation/reports", headers=ann.headers)
    assert queue.status_code == 200, queue.text

    # turned off (here by the admin, with the admin's password): dormant again
    off = await client.request(
        "DELETE",
        "/api/v1/admin/users/ann/mfa",
        json={"password": DEFAULT_PASSWORD},
        headers=admin.headers,
    )
    assert off.status_code == 204, off.text
    _needs_second_factor(
        await client.get("/api/v1/moderation/reports", headers=ann.headers), "moderator"
    )
    again = await client.post(
        "/api/v1/auth/token",
        data={"grant_type": "password", "username": "ann", "password": DEFAULT_PASSWORD},
    )
    assert again.status_code == 200, again.text  # signing in needs no code now


async def test_optional_leaves_staff_powers_to_the_role(tmp_path: Path, database_url: str) -> None:
    """``TIDINGS_STAFF_MFA=optional``: the role alone (for deployments that enforce a second
    factor elsewhere, e.g. at a single sign-on provider)."""
    settings = make_settings(tmp_path / "data", database_url, staff_mfa="optional")
    container = Container.build(settings)
    async with app_client(settings, container) as client:
        await make_admin(container, "root_admin")
        admin = await login(client, "root_admin")
        listed = await client.get("/api/v1/admin/users", headers=admin.headers)
        assert listed.status_code == 200, listed.text
