"""An admin lists dead-lettered events and replays them; the replay is delivered and audited."""

from __future__ import annotations

from typing import Any

import httpx2
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from tests.support.api import assert_problem, login, make_admin, sign_up
from tests.support.waiting import eventually
from tidings.app import create_app
from tidings.core.container import Container
from tidings.events.consumers import ConsumerRegistry, Envelope
from tidings.events.models import ProcessedEvent
from tidings.events.runtime import EventRuntime
from tidings.settings import Settings


async def test_dead_letter_list_and_replay(container: Container) -> None:
    healthy = {"value": False}

    async def sometimes(session: AsyncSession, env: Envelope, ctx: Any) -> None:
        if not healthy["value"]:
            raise RuntimeError("downstream is down")

    registry = ConsumerRegistry()
    registry.add("fragile", ["user.followed"], sometimes)
    settings = Settings(
        **{
            **container.settings.model_dump(),
            "relay_poll_seconds": 0.05,
            "consumer_retry_base_seconds": 0.01,
            "consumer_max_attempts": 2,
        }
    )
    container.events = EventRuntime(settings, container.db, registry, container)
    app = create_app(container.settings, container)
    transport = httpx2.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx2.AsyncClient(transport=transport, base_url="http://t") as client,
    ):
        await make_admin(container, "ops")
        admin = await login(client, "ops")
        fan = await sign_up(client, "fan")
        await sign_up(client, "star")
        assert (
            await client.put("/api/v1/users/star/follow", headers=fan.headers)
        ).status_code == 200

        async def dead() -> bool:
            body = (await client.get("/api/v1/admin/dead-letters", headers=admin.headers)).json()
            return len(body["data"]) == 1

        await eventually(dead)
        letter = (await client.get("/api/v1/admin/dead-letters", headers=admin.headers)).json()[
            "data"
        ][0]
        assert letter["consumer"] == "fragile"
        assert letter["event_type"] == "user.followed"
        assert "downstream is down" in letter["error"]
        assert_problem(await client.get("/api/v1/admin/dead-letters", headers=fan.headers), 403)

        healthy["value"] = True
        replayed = await client.post(
            f"/api/v1/admin/dead-letters/{letter['id']}/replay", headers=admin.headers
        )
        assert replayed.status_code == 200, replayed.text
        assert replayed.json()["replayed_at"] is not None
        assert_problem(
            await client.post(
                f"/api/v1/admin/dead-letters/{letter['id']}/replay", headers=admin.headers
            ),
            409,
        )

        async def applied() -> bool:
            async with container.db.unit_of_work(write=False) as session:
                row = await session.execute(
                    select(ProcessedEvent).where(ProcessedEvent.consumer == "fragile")
                )
                return row.first() is not None

        await eventually(applied)
        audit = await client.get(
            "/api/v1/admin/audit-events",
            params={"action": "events:dead_letter_replayed"},
            headers=admin.headers,
        )
        assert len(audit.json()["data"]) == 1
        pending = await client.get("/api/v1/admin/dead-letters", headers=admin.headers)
        assert pending.json()["data"] == []
