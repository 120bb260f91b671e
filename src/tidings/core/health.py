"""Liveness and readiness probes."""

from __future__ import annotations

import asyncio

import structlog
from fastapi import APIRouter, Depends, Request, Response
from sqlalchemy.exc import SQLAlchemyError

from tidings.auth.deps import public
from tidings.core.deps import ContainerDep
from tidings.core.problems import problem_response

router = APIRouter(tags=["operations"], dependencies=[Depends(public)])
log = structlog.get_logger("tidings.health")
READY_TIMEOUT_SECONDS = 3.0


@router.get("/livez", summary="The process is up")
async def livez() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="The service can reach its database",
    response_model=dict[str, str],
    responses={503: {"description": "A dependency is unreachable (problem+json)"}},
)
async def readyz(request: Request, container: ContainerDep) -> Response | dict[str, str]:
    try:
        await asyncio.wait_for(container.db.ping(), READY_TIMEOUT_SECONDS)
    except (SQLAlchemyError, OSError, TimeoutError) as exc:
        log.warning("readiness_failed", error=str(exc))
        return problem_response(
            request, 503, "Service unavailable", "not-ready", "The database is unreachable."
        )
    limits_ok = await container.limiter.healthy()
    body = {
        "status": "ok" if limits_ok else "degraded",
        "database": "ok",
        "rate_limit_store": "ok" if limits_ok else "degraded",
    }
    events = container.events
    if events is not None and events.started and not events.broker_up:
        # writes still succeed (they wait in the outbox), so the process stays ready
        body["status"] = "degraded"
        body["broker"] = "starting"
    return body
