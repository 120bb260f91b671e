"""Report routes: anyone signed in reports what they can see; moderators work the queue."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel

from tidings.auth.deps import limit, require
from tidings.auth.policy import Permission, Principal
from tidings.core.deps import DbSession
from tidings.core.http import IdPath, parse_id
from tidings.core.idempotency import IdempotencyKey, idempotent
from tidings.core.pagination import Page, PageParams, page_params, set_next_link
from tidings.core.schemas import IdIn
from tidings.reports import service
from tidings.reports.models import Report, ReportStatus, TargetType
from tidings.reports.schemas import (
    ModerationReportOut,
    ReportCreate,
    ReportDecision,
    ReportOut,
    ReportQueueSummary,
)

router = APIRouter(prefix="/api/v1", tags=["reports"])
Reporter = Annotated[Principal, Depends(require(Permission.CONTENT_WRITE))]
Moderator = Annotated[Principal, Depends(require(Permission.CONTENT_MODERATE))]


def _as_moderator_sees(report: Report, moderator: Principal) -> ModerationReportOut:
    """A report about the moderator themselves does not tell them who made it."""
    out = ModerationReportOut.model_validate(report)
    if report.target_owner_id == moderator.user_id:
        out.reporter_id = None
    return out


@router.post(
    "/reports",
    status_code=201,
    response_model=ReportOut,
    summary="Report a post, a comment or an account to the moderators",
    dependencies=[Depends(limit("report_create"))],
)
async def create_report(
    request: Request,
    body: ReportCreate,
    reporter: Reporter,
    session: DbSession,
    _key: IdempotencyKey = None,
) -> Response:
    async def produce() -> BaseModel:
        return ReportOut.model_validate(await service.create_report(session, reporter, body))

    return await idempotent(request, session, reporter.user_id, 201, produce)


@router.get(
    "/moderation/reports",
    response_model=Page[ModerationReportOut],
    summary="Reports, newest first (moderators)",
)
async def list_reports(
    request: Request,
    response: Response,
    moderator: Moderator,
    session: DbSession,
    page: Annotated[PageParams, Depends(page_params)],
    status: Annotated[ReportStatus | None, Query(description="Only this status.")] = None,
    target_type: Annotated[TargetType | None, Query(description="Only this kind.")] = None,
    target_id: Annotated[IdIn | None, Query(description="Only this post, comment or user.")] = None,
) -> Page[ModerationReportOut]:
    rows, cursor = await service.list_reports(
        session,
        page,
        status=status,
        target_type=target_type,
        target_id=target_id,
    )
    set_next_link(request, response, cursor)
    return Page[ModerationReportOut](
        data=[_as_moderator_sees(r, moderator) for r in rows], next_cursor=cursor
    )


@router.get(
    "/moderation/summary",
    response_model=ReportQueueSummary,
    summary="The moderation queue at a glance: open reports per kind, and since when (moderators)",
)
async def report_queue_summary(_moderator: Moderator, session: DbSession) -> ReportQueueSummary:
    return await service.queue_summary(session)


@router.patch(
    "/moderation/reports/{report_id}",
    response_model=ModerationReportOut,
    summary="Close a report as resolved or dismissed (moderators; audited)",
)
async def decide_report(
    report_id: IdPath, body: ReportDecision, moderator: Moderator, session: DbSession
) -> ModerationReportOut:
    report = await service.decide(session, moderator, parse_id(report_id, "report"), body)
    return _as_moderator_sees(report, moderator)
