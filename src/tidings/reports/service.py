"""Report use cases: a user reports what they can see; moderators close reports. Services
never commit."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from tidings.audit.service import AuditAction, record_audit
from tidings.auth.policy import Principal
from tidings.comments.service import visible_comment
from tidings.core.db import utcnow
from tidings.core.errors import Conflict, FieldError, Forbidden, NotFound, ValidationFailed
from tidings.core.pagination import PageParams, paginate
from tidings.events import domain
from tidings.events.outbox import record
from tidings.graph.service import visible_user
from tidings.posts.service import visible_post
from tidings.reports.models import Report, ReportStatus, TargetType
from tidings.reports.repository import DUPLICATE, ReportRepository
from tidings.reports.schemas import ReportCreate, ReportDecision, ReportQueueSummary

NOT_FOUND = "No such report."


async def _target(
    session: AsyncSession, reporter: Principal, cmd: ReportCreate
) -> tuple[TargetType, int, int, str]:
    """What is reported: its type, id, owner, and the body field that named it. What the
    reporter cannot see is a 404 like a missing target, except that a block of their own does
    not hide it: blocking someone is what people do first, and it must not stop a report."""
    if cmd.post_id is not None:
        post, _ctx = await visible_post(session, reporter, cmd.post_id, own_blocks_hide=False)
        return TargetType.POST, post.id, post.author_id, "post_id"
    if cmd.comment_id is not None:
        comment, author = await visible_comment(
            session, reporter, cmd.comment_id, live=True, own_blocks_hide=False
        )
        return TargetType.COMMENT, comment.id, author.id, "comment_id"
    assert cmd.username is not None  # the schema requires exactly one target
    user = await visible_user(session, cmd.username, reporter)  # hidden only by their block
    return TargetType.USER, user.id, user.id, "username"


async def create_report(session: AsyncSession, reporter: Principal, cmd: ReportCreate) -> Report:
    target_type, target_id, owner_id, field = await _target(session, reporter, cmd)
    if owner_id == reporter.user_id:
        raise ValidationFailed(
            "You cannot report yourself or what you wrote.",
            errors=[FieldError(loc=["body", field], msg="this is yours")],
        )
    repo = ReportRepository(session)
    if await repo.open_by(reporter.user_id, target_type.value, target_id) is not None:
        raise Conflict(DUPLICATE)
    report = Report(
        reporter_id=reporter.user_id,
        target_type=target_type.value,
        target_id=target_id,
        target_owner_id=owner_id,
        reason=cmd.reason.value,
        note=cmd.note,
        status=ReportStatus.OPEN.value,
    )
    await repo.add(report)
    record(
        session,
        domain.ReportCreated(
            report_id=report.id,
            user_id=reporter.user_id,
            target_type=report.target_type,
            target_id=target_id,
            reason=report.reason,
        ),
    )
    return report


async def list_reports(
    session: AsyncSession,
    params: PageParams,
    *,
    status: ReportStatus | None,
    target_type: TargetType | None,
    target_id: int | None,
) -> tuple[list[Report], str | None]:
    key = params.key("id")
    rows = await ReportRepository(session).page(
        params.limit,
        key["id"] if key else None,
        status=status,
        target_type=target_type.value if target_type else None,
        target_id=target_id,
    )
    return paginate(rows, params.limit, lambda r: {"id": r.id})


async def decide(
    session: AsyncSession, moderator: Principal, report_id: int, cmd: ReportDecision
) -> Report:
    """Close an open report as resolved or dismissed (audited). Acting on the content itself
    is done with the usual routes (delete the post or comment, suspend the account)."""
    report = await ReportRepository(session).get(report_id, for_update=True)
    if report is None:
        raise NotFound(NOT_FOUND)
    if report.target_owner_id == moderator.user_id:
        raise Forbidden("A report about you or what you wrote is for another moderator to decide.")
    if report.status != ReportStatus.OPEN.value:
        raise Conflict(f"This report is already {report.status}.")
    report.status = cmd.status.value
    report.resolution_note = cmd.resolution_note
    report.resolved_at = utcnow()
    report.resolved_by_id = moderator.user_id
    await session.flush()
    action = (
        AuditAction.REPORT_RESOLVED
        if cmd.status is ReportStatus.RESOLVED
        else AuditAction.REPORT_DISMISSED
    )
    await record_audit(
        session,
        action,
        actor_id=moderator.user_id,
        target_type="report",
        target_id=report.id,
        reported_type=report.target_type,
        reported_id=str(report.target_id),
    )
    record(
        session,
        domain.ReportClosed(
            report_id=report.id,
            user_id=moderator.user_id,
            target_type=report.target_type,
            target_id=report.target_id,
            status=report.status,
        ),
    )
    return report


async def queue_summary(session: AsyncSession) -> ReportQueueSummary:
    counts = await ReportRepository(session).open_counts()
    by_kind = {kind: 0 for kind in TargetType}
    for kind, n, _oldest in counts:
        by_kind[TargetType(kind)] = n
    oldest = min((at for _kind, _n, at in counts), default=None)
    return ReportQueueSummary(
        open=sum(by_kind.values()), open_by_target_type=by_kind, oldest_open_at=oldest
    )
