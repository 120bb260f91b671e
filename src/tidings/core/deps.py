"""Request-scoped dependencies: the container and the unit of work."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from tidings.core.container import Container
from tidings.core.db import _write_intent, commit, rollback
from tidings.core.errors import AppError

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def container_of(request: Request) -> Container:
    container: Container = request.app.state.container
    return container


async def get_container(request: Request) -> Container:
    """The app's container (``async``: a plain ``def`` dependency would cost a thread-pool
    round trip on every request)."""
    return container_of(request)


@asynccontextmanager
async def unit_of_work(container: Container, *, write: bool = True) -> AsyncIterator[AsyncSession]:
    """One unit of work of a request: commits when the block ends, rolls back when it raises —
    except for errors marked ``keep_changes`` (e.g. refresh-token reuse must persist the
    revocation it triggered while still answering an error) — then wakes the outbox relay if
    events were recorded. Routes get theirs from :data:`DbSession`; a route that must not hold
    a transaction across a slow outside call (the OAuth callback's requests to the provider)
    opens two of these around it."""
    token = _write_intent.set(write)
    session = container.db.sessions()
    try:
        yield session
    except AppError as exc:
        await (commit(session) if exc.keep_changes else rollback(session))
        raise
    except BaseException:
        await rollback(session)
        raise
    else:
        await commit(session)
        if session.info.get("outbox") and container.events is not None:
            container.events.wake()
    finally:
        await session.close()
        _write_intent.reset(token)


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """The request's unit of work (see :func:`unit_of_work`); writes unless the method is
    safe."""
    write = request.method not in SAFE_METHODS
    async with unit_of_work(container_of(request), write=write) as session:
        yield session


ContainerDep = Annotated[Container, Depends(get_container)]
# scope="function": the commit runs when the route returns, before the response is sent, so a
# client never sees success for a write that then fails to commit.
DbSession = Annotated[AsyncSession, Depends(get_session, scope="function")]
