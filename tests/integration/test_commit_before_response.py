"""The unit of work commits before the response starts: a client never sees a success for a
write that is not yet durable (FastAPI's default runs yield-dependency teardown afterwards)."""

from __future__ import annotations

from typing import Any

import httpx2
import pytest
from fastapi import Depends
from sqlalchemy.ext.asyncio import AsyncSession

from tidings.app import create_app
from tidings.auth.deps import public
from tidings.core.container import Container
from tidings.core.deps import DbSession


async def test_commit_precedes_response_start(
    container: Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = create_app(container.settings, container)
    events: list[str] = []
    original_commit = AsyncSession.commit

    async def commit(self: AsyncSession) -> None:
        events.append("commit")
        await original_commit(self)

    monkeypatch.setattr(AsyncSession, "commit", commit)

    @app.post("/_probe", dependencies=[Depends(public)])
    async def probe(session: DbSession) -> dict[str, bool]:
        events.append("endpoint")
        return {"ok": True}

    async def observed(scope: Any, receive: Any, send: Any) -> None:
        async def watch(message: Any) -> None:
            if message["type"] == "http.response.start":
                events.append("response")
            await send(message)

        await app(scope, receive, watch)

    transport = httpx2.ASGITransport(app=observed)
    async with (
        app.router.lifespan_context(app),
        httpx2.AsyncClient(transport=transport, base_url="http://t") as client,
    ):
        events.clear()  # the lifespan's own commits (the node id lease) are not the request's
        assert (await client.post("/_probe")).status_code == 200
        assert events == ["endpoint", "commit", "response"]
