"""The audit trail: events for security actions, append-only, tamper-evident."""

from __future__ import annotations

import httpx2
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from tests.support.api import DEFAULT_PASSWORD, assert_problem, login, make_admin, sign_up
from tidings.audit.service import verify_chain
from tidings.core.container import Container


async def _actions(client: httpx2.AsyncClient, headers: dict[str, str], **query: str) -> list[str]:
    response = await client.get("/api/v1/admin/audit-events", params=query, headers=headers)
    assert response.status_code == 200, response.text
    return [event["action"] for event in response.json()["data"]]


async def test_security_actions_are_audited(
    client: httpx2.AsyncClient, container: Container
) -> None:
    await make_admin(container, "auditor")
    admin = await login(client, "auditor")
    user = await sign_up(client, "subject")
    await client.post(
        "/api/v1/auth/token",
        data={"grant_type": "password", "username": "subject", "password": "wrong-password"},
    )
    rotated = await client.post(
        "/api/v1/auth/token",
        data={"grant_type": "refresh_token", "refresh_token": user.refresh_token},
    )
    assert rotated.status_code == 200
    reuse = await client.post(
        "/api/v1/auth/token",
        data={"grant_type": "refresh_token", "refresh_token": user.refresh_token},
    )
    assert_problem(reuse, 400)
    user = await login(client, "subject")
    await client.post(
        "/api/v1/me/password",
        json={"current_password": DEFAULT_PASSWORD, "new_password": "brand-new-password"},
        headers=user.headers,
    )
    user = await login(client, "subject", "brand-new-password")
    await client.post("/api/v1/auth/revoke", data={"token": user.refresh_token})
    await client.patch(
        "/api/v1/admin/users/subject", json={"role": "moderator"}, headers=admin.headers
    )
    await client.patch(
        "/api/v1/admin/users/subject", json={"suspended": True}, headers=admin.headers
    )
    await client.patch(
        "/api/v1/admin/users/subject", json={"suspended": False}, headers=admin.headers
    )
    author = await sign_up(client, "poster")
    post = (
        await client.post("/api/v1/posts", json={"text": "spam"}, headers=author.headers)
    ).json()
    mod = await login(client, "subject", "brand-new-password")
    assert (
        await client.delete(f"/api/v1/posts/{post['id']}", headers=mod.headers)
    ).status_code == 204

    actions = await _actions(client, admin.headers, limit="100")
    for expected in (
        "account:admin_created",
        "auth:login",
        "auth:login_failed",
        "auth:refresh_reuse_detected",
        "account:password_changed",
        "auth:logout",
        "account:role_changed",
        "account:suspended",
        "account:unsuspended",
        "post:deleted_by_moderator",
    ):
        assert expected in actions, (expected, actions)

    failed = (
        await client.get(
            "/api/v1/admin/audit-events",
            params={"action": "auth:login_failed"},
            headers=admin.headers,
        )
    ).json()["data"]
    assert len(failed) == 1
    assert failed[0]["target_id"] == user.user_id
    assert failed[0]["request_id"]
    assert failed[0]["details"] == {"login_as": "username"}  # never the typed text

    # A password typed into the name field: the trail keeps a keyed digest, not the text.
    typed = "Hunter2-Is-My-Password"
    await client.post(
        "/api/v1/auth/token",
        data={"grant_type": "password", "username": typed, "password": "hunter2hunter2"},
    )
    everything = await client.get(
        "/api/v1/admin/audit-events", params={"limit": "100"}, headers=admin.headers
    )
    assert typed.lower() not in everything.text.lower()
    found = await client.get(
        "/api/v1/admin/audit-events",
        params={"login": f"  {typed.upper()} "},  # the name as typed, any case
        headers=admin.headers,
    )
    assert found.status_code == 200, found.text
    [unknown] = found.json()["data"]
    assert unknown["action"] == "auth:login_failed"
    assert unknown["target_id"] is None
    assert set(unknown["details"]) == {"login_digest"}
    assert len(unknown["details"]["login_digest"]) == 32
    other = await client.get(
        "/api/v1/admin/audit-events", params={"login": "someone-else"}, headers=admin.headers
    )
    assert other.json()["data"] == []
    role = (
        await client.get(
            "/api/v1/admin/audit-events",
            params={"action": "account:role_changed"},
            headers=admin.headers,
        )
    ).json()["data"][0]
    assert role["actor_id"] == admin.user_id
    assert role["details"] == {"old": "user", "new": "moderator"}

    assert_problem(await client.get("/api/v1/admin/audit-events", headers=author.headers), 403)
    assert_problem(await client.get("/api/v1/admin/audit-events"), 401)
    assert_problem(
        await client.get(
            "/api/v1/admin/audit-events", params={"action": "DROP TABLE"}, headers=admin.headers
        ),
        422,
    )
    async with container.db.unit_of_work() as session:
        report = await verify_chain(session)
    assert report.ok
    assert report.checked == len(actions) + 1  # and the unknown name's failed sign-in


async def test_tampering_is_refused_and_detected(
    client: httpx2.AsyncClient, container: Container, backend: str
) -> None:
    await make_admin(container, "keeper")
    for _ in range(3):
        await login(client, "keeper")

    with pytest.raises(DBAPIError, match="append-only"):
        async with container.db.unit_of_work() as session:
            await session.execute(text("UPDATE audit_events SET ip = '6.6.6.6' WHERE seq = 2"))
    with pytest.raises(DBAPIError, match="append-only"):
        async with container.db.unit_of_work() as session:
            await session.execute(text("DELETE FROM audit_events WHERE seq = 3"))

    # By hand, past the guard (what an attacker with DBA rights could do):
    async with container.db.unit_of_work() as session:
        if backend == "postgres":
            await session.execute(text("SET LOCAL session_replication_role = replica"))
        else:
            await session.execute(text("DROP TRIGGER audit_events_no_update"))
        await session.execute(text("UPDATE audit_events SET ip = '6.6.6.6' WHERE seq = 3"))
    async with container.db.unit_of_work() as session:
        report = await verify_chain(session)
    assert not report.ok
    assert report.broken_seq == 3
    assert report.checked == 2


async def test_an_actor_id_past_the_id_range_is_a_422_not_a_500(
    client: httpx2.AsyncClient, container: Container
) -> None:
    await make_admin(container, "auditor")
    admin = await login(client, "auditor")
    too_big = await client.get(
        "/api/v1/admin/audit-events",
        params={"actor_id": "9999999999999999999"},  # 19 digits, past a 64-bit id
        headers=admin.headers,
    )
    assert assert_problem(too_big, 422)["errors"][0]["loc"] == ["query", "actor_id"]
