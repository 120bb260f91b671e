"""Finding accounts by the start of their username (`GET /api/v1/users?prefix=`): any case,
username (byte) order, keyset pages; no suspended, deleted or blocked-either-way accounts.
On SQLite and PostgreSQL; the PostgreSQL plan walks the prefix index."""

from __future__ import annotations

import httpx2
import pytest
from sqlalchemy import text

from tests.support.api import DEFAULT_PASSWORD, assert_problem, login, make_admin, sign_up
from tidings.accounts.repository import UserRepository
from tidings.core.container import Container

FIND = "/api/v1/users"


async def _names(client: httpx2.AsyncClient, query: str, **headers: str) -> list[str]:
    found = await client.get(f"{FIND}?{query}", headers=headers)
    assert found.status_code == 200, found.text
    return [item["username"] for item in found.json()["data"]]


async def test_prefix_any_case_in_username_order_with_pages(client: httpx2.AsyncClient) -> None:
    for name in ("alice", "Alina", "alfred", "al_x", "bob", "xal"):
        await sign_up(client, name)
    assert await _names(client, "prefix=al") == ["al_x", "alfred", "alice", "Alina"]
    assert await _names(client, "prefix=AL") == ["al_x", "alfred", "alice", "Alina"]
    assert await _names(client, "prefix=ali") == ["alice", "Alina"]
    assert await _names(client, "prefix=alz") == []
    first = await client.get(f"{FIND}?prefix=al&limit=2")
    assert [u["username"] for u in first.json()["data"]] == ["al_x", "alfred"]
    assert first.headers["link"].endswith('rel="next"'), first.headers
    rest = await client.get(f"{FIND}?prefix=al&limit=2&cursor={first.json()['next_cursor']}")
    assert [u["username"] for u in rest.json()["data"]] == ["alice", "Alina"]
    assert rest.json()["next_cursor"] is None

    for bad in ("prefix=a%25", "prefix=", "", "prefix=" + "a" * 31, "prefix=al&limit=0"):
        assert_problem(await client.get(f"{FIND}?{bad}"), 422)
    assert_problem(await client.get(f"{FIND}?prefix=al&cursor=garbage"), 400)


async def test_hidden_accounts_are_not_found(
    client: httpx2.AsyncClient, container: Container
) -> None:
    ann = await sign_up(client, "ann")
    for name in ("cal_blocks", "cal_blocked", "cal_gone", "cal_shown", "cal_banned"):
        await sign_up(client, name)
    blocker = await login(client, "cal_blocks")
    await client.put("/api/v1/users/ann/block", headers=blocker.headers)
    await client.put("/api/v1/users/cal_blocked/block", headers=ann.headers)
    gone = await login(client, "cal_gone")
    await client.request(
        "DELETE", "/api/v1/me", json={"password": DEFAULT_PASSWORD}, headers=gone.headers
    )
    await make_admin(container, "root_admin")
    admin = await login(client, "root_admin")
    banned = await client.patch(
        "/api/v1/admin/users/cal_banned", json={"suspended": True}, headers=admin.headers
    )
    assert banned.status_code == 200, banned.text

    assert await _names(client, "prefix=cal_", **ann.headers) == ["cal_shown"]
    assert await _names(client, "prefix=cal_") == ["cal_blocked", "cal_blocks", "cal_shown"]


async def test_a_cursor_of_another_prefix_loses_no_account(client: httpx2.AsyncClient) -> None:
    for name in ("ali", "alibi", "al_x"):
        await sign_up(client, name)
    first = (await client.get(f"{FIND}?prefix=al&limit=1")).json()  # after al_x
    reused = await client.get(f"{FIND}?prefix=ali&cursor={first['next_cursor']}")
    assert [u["username"] for u in reused.json()["data"]] == ["ali", "alibi"]


async def test_postgresql_walks_the_prefix_index(container: Container) -> None:
    """The statement as sent, explained: the partial text_pattern_ops index gives the range
    and the order (scans off, so an index that could not give the order shows as a Sort)."""
    captured: list[str] = []
    async with container.db.unit_of_work(write=False) as session:
        if session.get_bind().dialect.name != "postgresql":
            pytest.skip("SQLite: the unique index on username_key, in its (byte) order")
        await session.execute(text("SET LOCAL enable_seqscan = off"))
        repo = UserRepository(session)
        original = session.scalars

        async def explain(stmt, *args, **kwargs):  # type: ignore[no-untyped-def]
            compiled = stmt.compile(
                dialect=session.get_bind().dialect, compile_kwargs={"literal_binds": True}
            )
            plan = await session.execute(text(f"EXPLAIN {compiled}"))
            captured.extend(row[0] for row in plan)
            return await original(stmt, *args, **kwargs)

        session.scalars = explain  # type: ignore[method-assign]
        try:
            await repo.by_prefix("ali", None, 20, None)
            await repo.by_prefix("ali", "alice", 20, 12345)  # a viewer: blocks checked
        finally:
            session.scalars = original  # type: ignore[method-assign]
    plans = "\n".join(captured)
    assert plans.count("ix_users_username_key_prefix") == 2, plans
    assert "Sort" not in plans, plans
