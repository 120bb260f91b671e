"""Admin routes for events that failed every retry: list them, send them back for delivery."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from tidings.audit.service import AuditAction, record_audit
from tidings.auth.deps import require
from tidings.auth.policy import Permission, Principal
from tidings.core.db import utcnow
from tidings.core.deps import DbSession
from tidings.core.errors import Conflict, NotFound
from tidings.core.http import IdPath, parse_id
from tidings.core.pagination import Page, PageParams, page_params, paginate, set_next_link
from tidings.core.schemas import Id, ResponseModel, Timestamp
from tidings.events.models import DeadLetter, OutboxMessage

router = APIRouter(prefix="/api/v1/admin/dead-letters", tags=["events"])
Admin = Annotated[Principal, Depends(require(Permission.USERS_MANAGE))]


class DeadLetterOut(ResponseModel):
    id: Id
    event_id: Id
    consumer: str
    event_type: str
    error: str
    attempts: int
    created_at: Timestamp
    replayed_at: Timestamp | None


@router.get("", response_model=Page[DeadLetterOut], summary="Events that failed every retry")
async def list_dead_letters(
    request: Request,
    response: Response,
    _admin: Admin,
    session: DbSession,
    page: Annotated[PageParams, Depends(page_params)],
    pending: Annotated[bool, Query(description="Only those not replayed yet.")] = True,
) -> Page[DeadLetterOut]:
    key = page.key("id")
    stmt = select(DeadLetter).order_by(DeadLetter.id.desc()).limit(page.limit + 1)
    if key is not None:
        stmt = stmt.where(DeadLetter.id < key["id"])
    if pending:
        stmt = stmt.where(DeadLetter.replayed_at.is_(None))
    rows = list((await session.execute(stmt)).scalars())
    items, cursor = paginate(rows, page.limit, lambda d: {"id": d.id})
    set_next_link(request, response, cursor)
    return Page[DeadLetterOut](
        data=[DeadLetterOut.model_validate(d) for d in items], next_cursor=cursor
    )


async def replay(session: AsyncSession, actor: Principal, dead_letter_id: int) -> DeadLetter:
    letter = await session.get(DeadLetter, dead_letter_id, with_for_update=True)
    if letter is None:
        raise NotFound("No such dead letter.")
    if letter.replayed_at is not None:
        raise Conflict("This dead letter was already replayed.")
    letter.replayed_at = utcnow()
    # the relay sees the consumer as not done again and republishes right away
    await session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id == letter.event_id)
        .values(published_at=None, next_attempt_at=None)
        .execution_options(synchronize_session=False)
    )
    await record_audit(
        session,
        AuditAction.DEAD_LETTER_REPLAYED,
        actor_id=actor.user_id,
        target_type="event",
        target_id=letter.event_id,
        consumer=letter.consumer,
    )
    return letter


@router.post(
    "/{dead_letter_id}/replay",
    response_model=DeadLetterOut,
    summary="Deliver a dead-lettered event to its consumer again",
)
async def replay_dead_letter(
    dead_letter_id: IdPath, admin: Admin, session: DbSession
) -> DeadLetterOut:
    letter = await replay(session, admin, parse_id(dead_letter_id, "dead letter"))
    return DeadLetterOut.model_validate(letter)
