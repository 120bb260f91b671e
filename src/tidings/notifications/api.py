"""Notification routes: your list, your unread count, marking read."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Depends, Query, Request, Response
from pydantic import WithJsonSchema

from tidings.auth.deps import require
from tidings.auth.policy import Permission, Principal
from tidings.core.deps import DbSession
from tidings.core.pagination import Page, PageParams, page_params, set_next_link
from tidings.notifications import service
from tidings.notifications.schemas import (
    KIND_NAMES,
    KINDS_PATTERN,
    MarkReadIn,
    NotificationFilters,
    NotificationOut,
    UnreadCountOut,
)

router = APIRouter(prefix="/api/v1/notifications", tags=["notifications"])
Reader = Annotated[Principal, Depends(require(Permission.SELF_READ))]
Writer = Annotated[Principal, Depends(require(Permission.SELF_WRITE))]
PageDep = Annotated[PageParams, Depends(page_params)]


async def notification_filters(
    kinds: Annotated[
        Annotated[
            str, WithJsonSchema({"type": "string", "maxLength": 200, "pattern": KINDS_PATTERN})
        ]
        | None,
        Query(
            max_length=200,
            description=f"Comma-separated kinds to include ({KIND_NAMES}); all when absent.",
            examples=["like,follow"],
        ),
    ] = None,
    unread: Annotated[bool, Query(description="Only unread notifications.")] = False,
) -> NotificationFilters:
    return NotificationFilters.parse(kinds, unread)


Filters = Annotated[NotificationFilters, Depends(notification_filters)]


@router.get(
    "",
    response_model=Page[NotificationOut],
    summary="Your notifications, latest activity first (grouped: one item per post liked, ...)",
)
async def list_notifications(
    request: Request,
    response: Response,
    reader: Reader,
    session: DbSession,
    page: PageDep,
    filters: Filters,
) -> Page[NotificationOut]:
    items, cursor = await service.list_notifications(session, reader, page, filters)
    set_next_link(request, response, cursor)
    return Page[NotificationOut](data=items, next_cursor=cursor)


@router.get("/unread-count", response_model=UnreadCountOut, summary="How many are unread")
async def unread_count(reader: Reader, session: DbSession) -> UnreadCountOut:
    return await service.unread_count(session, reader)


@router.post(
    "/read",
    response_model=UnreadCountOut,
    summary="Mark all read, or one and every one listed below it; answers the new unread count",
)
async def mark_read(
    writer: Writer,
    session: DbSession,
    body: Annotated[MarkReadIn | None, Body()] = None,
) -> UnreadCountOut:
    return await service.mark_read(session, writer, body.up_to_id if body else None)
