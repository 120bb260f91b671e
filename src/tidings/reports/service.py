"""Report use cases: a user reports what they can see; moderators close reports. Services
never commit."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from tidings.accounts.models import User
from tidings.audit.service import AuditAction, record_audit
from tidings.auth.policy import Permission, Principal
from tidings.comments.models import Comment
from tidings.comments.repository import CommentRepository
from tidings.core.db import utcnow
from tidings.core.errors import Conflict, FieldError, Forbidden, NotFound, ValidationFailed
from tidings.core.pagination import PageParams, paginate
from tidings.events import domain
from tidings.events.outbox import record
from tidings.graph.repository import GraphRepository
from tidings.graph.service import visible_user
from tidings.posts.models import Post
from tidings.posts.repository import PostRepository
from tidings.posts.views import load_context
from tidings.reports.models import Report, ReportStatus, TargetType
from tidings.reports.repository import DUPLICATE, ReportRepository
from tidings.reports.schemas import ReportCreate, ReportDecision

NOT_FOUND = "No such report."


async def _blocked_only_by(session: AsyncSession, reporter_id: int, author_id: int) -> bool:
    """The reporter blocks the author and the author does not block the reporter."""
    rel = await GraphRepository(session).relationship(reporter_id, author_id)
    return rel.blocking and not rel.blocked_by


async def _reportable_post(session: AsyncSession, reporter: Principal, post_id: int) -> Post:
    """The post as the reporter may see it, except that a block of their own does not hide it:
    blocking someone is what people do first, and it must not stop them reporting. A post the
    reporter cannot see otherwise (private, followers-only, deleted, by a suspended author or
    by someone who blocks them) is a 404 like a missing one."""
    post = await PostRepository(session).get(post_id)
    if post is None:
        raise NotFound("No such post.")
    ctx = await load_context(session, reporter, [post])
    author_id = post.author_id
    if author_id in ctx.blocked and await _blocked_only_by(session, reporter.user_id, author_id):
        ctx.blocked.discard(author_id)
    if not ctx.can_see(post):
        raise NotFound("No such post.")
    return post


async def _reportable_comment(
    session: AsyncSession, reporter: Principal, comment_id: int
) -> Comment:
    """A live comment under a post the reporter may report, by an author who is not suspended
    and does not block the reporter (the same 404 otherwise)."""
    missing = NotFound("No such comment.")
    comment = await CommentRepository(session).get(comment_id)
    if comment is None or comment.deleted_at is not None:
        raise missing
    try:
        await _reportable_post(session, reporter, comment.post_id)
    except NotFound:
        raise missing from None
    if reporter.can(Permission.CONTENT_MODERATE) or comment.author_id == reporter.user_id:
        return comment
    author = await session.get(User, comment.author_id)
    if author is None or author.suspended:
        raise missing
    rel = await GraphRepository(session).relationship(reporter.user_id, author.id)
    if rel.blocked_by:
        raise missing
    return comment


async def _target(
    session: AsyncSession, reporter: Principal, cmd: ReportCreate
) -> tuple[TargetType, int, int, str]:
    """What is reported: its type, id, owner, and the body field that named it."""
    if cmd.post_id is not None:
        post = await _reportable_post(session, reporter, cmd.post_id)
        return TargetType.POST, post.id, post.author_id, "post_id"
    if cmd.comment_id is not None:
        comment = await _reportable_comment(session, reporter, cmd.comment_id)
        return TargetType.COMMENT, comment.id, comment.author_id, "comment_id"
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
