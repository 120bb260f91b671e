"""Admin view of the audit trail."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response

from tidings.audit.repository import AuditFilter, page_events
from tidings.audit.schemas import AuditEventOut
from tidings.audit.service import login_digest
from tidings.auth.deps import require
from tidings.auth.policy import Permission, Principal
from tidings.core.deps import ContainerDep, DbSession
from tidings.core.pagination import Page, PageParams, page_params, paginate, set_next_link
from tidings.core.schemas import IdIn

router = APIRouter(prefix="/api/v1/admin", tags=["audit"])
Admin = Annotated[Principal, Depends(require(Permission.USERS_MANAGE))]


@router.get("/audit-events", response_model=Page[AuditEventOut], summary="The audit trail")
async def list_audit_events(
    request: Request,
    response: Response,
    _admin: Admin,
    session: DbSession,
    container: ContainerDep,
    page: Annotated[PageParams, Depends(page_params)],
    actor_id: Annotated[IdIn | None, Query()] = None,
    action: Annotated[str | None, Query(max_length=64, pattern=r"^[a-z_]+:[a-z_]+$")] = None,
    target_type: Annotated[str | None, Query(max_length=32)] = None,
    target_id: Annotated[str | None, Query(max_length=64)] = None,
    since: Annotated[datetime | None, Query(description="RFC 3339, inclusive")] = None,
    until: Annotated[datetime | None, Query(description="RFC 3339, exclusive")] = None,
    login: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=254,
            description="Failed sign-ins with this name or email, when no account has it "
            "(the trail keeps only a keyed digest of such names).",
        ),
    ] = None,
) -> Page[AuditEventOut]:
    key = page.key("seq")
    flt = AuditFilter(
        actor_id=actor_id,
        action=action,
        target_type=target_type,
        target_id=target_id,
        since=since,
        until=until,
        login_digest=login_digest(container.keys.secret_key, login) if login else None,
    )
    rows = await page_events(session, flt, page.limit, key["seq"] if key else None)
    events, cursor = paginate(rows, page.limit, lambda e: {"seq": e.seq})
    set_next_link(request, response, cursor)
    return Page[AuditEventOut](
        data=[AuditEventOut.model_validate(e) for e in events], next_cursor=cursor
    )
