"""Notification use cases: record them (for the consumer and for other features), list, count,
mark read. Services never commit: the caller's unit of work does."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from tidings.auth.policy import Permission, Principal
from tidings.core.db import utcnow
from tidings.core.errors import NotFound
from tidings.core.ids import new_id
from tidings.core.pagination import PageParams, paginate
from tidings.graph.repository import GraphRepository
from tidings.notifications.models import NotificationGroup
from tidings.notifications.repository import NotificationRepository
from tidings.notifications.schemas import (
    Kind,
    NotificationFilters,
    NotificationOut,
    UnreadCountOut,
)
from tidings.notifications.views import render
from tidings.reports.models import Report, ReportStatus

MAX_TITLE = 200


@dataclass(frozen=True)
class Notice:
    """One notification to record for one recipient."""

    recipient_id: int
    kind: Kind
    group_key: str  # grouped kinds share a key ("like:<post id>"); the others carry their id
    post_id: int | None = None
    comment_id: int | None = None


async def audience(session: AsyncSession, actor_id: int, candidates: Iterable[int]) -> set[int]:
    """The candidates who want to hear about the actor, as of now: never the actor themselves,
    nobody blocked either way, nobody who mutes the actor, no deleted account on either side.
    Each pair of the actor and a candidate is locked against a block before blocks are checked,
    and stays locked until the caller's commit (:meth:`GraphRepository.lock_pairs`)."""
    ids = {c for c in candidates if c and c != actor_id}
    if not ids:
        return set()
    await GraphRepository(session).lock_pairs(actor_id, ids)
    repo = NotificationRepository(session)
    actor_gone, shut_out = await repo.shut_out(actor_id, ids)  # deleted, or blocked either way
    if actor_gone:
        return set()
    ids -= shut_out
    if not ids:
        return set()
    ids -= await repo.muting(actor_id, ids)
    return ids


async def notify(session: AsyncSession, actor_id: int, notices: Sequence[Notice]) -> int:
    """Record the notices the recipients want; one per recipient (the first listed wins, so a
    reply is not also a mention). Returns how many groups counted a new actor."""
    first: dict[int, Notice] = {}
    for notice in notices:
        first.setdefault(notice.recipient_id, notice)
    wanted = await audience(session, actor_id, first)
    repo = NotificationRepository(session)
    added = 0
    for recipient_id in sorted(wanted):  # one lock order for every consumer: no deadlocks
        notice = first[recipient_id]
        group = await repo.open_group(
            recipient_id,
            notice.kind.value,
            notice.group_key,
            post_id=notice.post_id,
            comment_id=notice.comment_id,
        )
        added += await repo.add_actor(group, actor_id)
    return added


async def notify_moderators(session: AsyncSession, report_id: int, *, second_factor: bool) -> int:
    """A new report: every moderator and admin who may decide it hears of it in one unread
    ``report`` notice that counts the reports since they last read it. Not the reporter, not
    whoever the report is about (a staff member's own content is for another one to decide),
    with ``second_factor`` (``TIDINGS_STAFF_MFA=required``) only staff whose powers work, and
    nothing when the report is already closed. Returns how many staff were told.

    For the notifications consumer, which applies each event once (its processed marker is
    written in the same transaction): called twice for one report, it counts it twice."""
    report = await session.get(Report, report_id)
    if report is None or report.status != ReportStatus.OPEN.value:
        return 0
    repo = NotificationRepository(session)
    excluding = [report.reporter_id, report.target_owner_id]
    staff = await repo.staff(excluding, second_factor=second_factor)
    for recipient_id in staff:  # ascending: one lock order for every consumer, no deadlocks
        group = await repo.open_group(recipient_id, Kind.REPORT.value, Kind.REPORT.value)
        await repo.count_report(group, report_id)
    return len(staff)


async def forget_pair(session: AsyncSession, user_id: int, other_id: int) -> int:
    """After a block: each of the two stops appearing in the other's notifications (counts,
    summaries and the unread count included; a group only they were in goes). Returns how many
    groups changed. Idempotent: a second run finds nothing to remove."""
    repo = NotificationRepository(session)
    changed = 0
    # one lock order for every consumer (recipients ascending, see notify): no deadlocks
    for recipient_id, actor_id in sorted([(user_id, other_id), (other_id, user_id)]):
        for group in await repo.groups_with_actor(recipient_id, actor_id):
            await repo.remove_actor(group, actor_id)
            changed += 1
    return changed


async def notify_system(
    session: AsyncSession,
    recipient_id: int,
    *,
    title: str,
    body: str,
    data: dict[str, Any] | None = None,
) -> None:
    """A notice from the service itself (e.g. "your webhook was disabled"), recorded in the
    caller's transaction; never grouped."""
    await NotificationRepository(session).add(
        NotificationGroup(
            recipient_id=recipient_id,
            kind=Kind.SYSTEM.value,
            group_key=f"system:{new_id()}",
            title=title[:MAX_TITLE],
            body=body,
            data=data,
            actor_count=0,
            latest_actor_ids=[],
            sort_key=new_id(),
        )
    )


async def list_notifications(
    session: AsyncSession, viewer: Principal, params: PageParams, filters: NotificationFilters
) -> tuple[list[NotificationOut], str | None]:
    """The viewer's notifications, latest activity first; actors loaded in one query."""
    key = params.key("sort_key")
    repo = NotificationRepository(session)
    rows = await repo.page(
        viewer.user_id,
        params.limit,
        key["sort_key"] if key else None,
        kinds={k.value for k in filters.kinds},
        unread=filters.unread,
        hidden=hidden_kinds(viewer),
    )
    page, cursor = paginate(rows, params.limit, lambda group: {"sort_key": group.sort_key})
    visible = await repo.visible_actors(
        viewer.user_id, (a for group in page for a in group.latest_actor_ids or [])
    )
    return [out for group in page if (out := render(group, visible)) is not None], cursor


def hidden_kinds(viewer: Principal) -> frozenset[str]:
    """Kinds kept from a reader who cannot act on them now: report notices once a moderator is
    demoted, suspended from staff powers, or acts as a user without a second factor."""
    return frozenset() if viewer.can(Permission.CONTENT_MODERATE) else STAFF_ONLY


STAFF_ONLY = frozenset({Kind.REPORT.value})


async def unread_count(session: AsyncSession, viewer: Principal) -> UnreadCountOut:
    repo = NotificationRepository(session)
    return UnreadCountOut(count=await repo.unread_count(viewer.user_id, hidden_kinds(viewer)))


async def mark_read(
    session: AsyncSession, viewer: Principal, up_to_id: int | None
) -> UnreadCountOut:
    """Mark every notification read, or ``up_to_id`` and those listed below it; 404 for an id
    that is not one of the viewer's notifications."""
    repo = NotificationRepository(session)
    up_to = None
    if up_to_id is not None:
        group = await repo.get(viewer.user_id, up_to_id)
        if group is None:
            raise NotFound("No such notification.")
        up_to = group.sort_key
    await repo.mark_read(viewer.user_id, up_to, utcnow())
    return UnreadCountOut(count=await repo.unread_count(viewer.user_id, hidden_kinds(viewer)))
