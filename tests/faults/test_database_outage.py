"""PostgreSQL goes away and comes back (real PostgreSQL, the test's own database).

What a restart does to the API, scoped to one database so the rest of the server is untouched:
every connection is dropped (``pg_terminate_backend``) and new ones are refused while it is
"down" (``ALLOW_CONNECTIONS false``). Requests in that window answer 503 problem+json with
Retry-After, never a 500, and write nothing; what was acknowledged before is all there after;
the pooled connections, all dead, are replaced without a restart of the API.
"""

from __future__ import annotations

import httpx2
import pytest

from tests.support.api import assert_problem, sign_up
from tests.support.databases import admin_sql

pytestmark = pytest.mark.parametrize("backend", ["postgres"])


def _database_name(url: str) -> str:
    return url.rsplit("/", 1)[1].split("?", 1)[0]


async def _go_down(name: str) -> None:
    await admin_sql(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
    await admin_sql(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE datname = $1 AND pid <> pg_backend_pid()",
        name,
    )


async def _come_back(name: str) -> None:
    await admin_sql(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')


async def test_requests_during_an_outage_fail_cleanly_and_nothing_acknowledged_is_lost(
    client: httpx2.AsyncClient, database_url: str
) -> None:
    name = _database_name(database_url)
    alice = await sign_up(client, "alice")
    acknowledged = []
    for i in range(3):
        response = await client.post(
            "/api/v1/posts", json={"text": f"kept {i}"}, headers=alice.headers
        )
        assert response.status_code == 201, response.text
        acknowledged.append(response.json()["id"])

    await _go_down(name)
    try:
        for _ in range(3):  # dead pooled connections first, then refused new ones
            refused = await client.post(
                "/api/v1/posts", json={"text": "during the outage"}, headers=alice.headers
            )
            body = assert_problem(refused, 503)
            assert refused.headers.get("retry-after"), refused.headers
            assert "Traceback" not in body["detail"]
            assert_problem(await client.get("/api/v1/feed", headers=alice.headers), 503)
    finally:
        await _come_back(name)

    after = await client.post("/api/v1/posts", json={"text": "after"}, headers=alice.headers)
    assert after.status_code == 201, after.text  # the pool recovered on its own
    feed = await client.get("/api/v1/feed?limit=50", headers=alice.headers)
    assert feed.status_code == 200, feed.text
    texts = [item["text"] for item in feed.json()["data"]]
    assert texts == ["after", "kept 2", "kept 1", "kept 0"]  # nothing lost, nothing half-written
    for post_id in acknowledged:
        assert (
            await client.get(f"/api/v1/posts/{post_id}", headers=alice.headers)
        ).status_code == 200
