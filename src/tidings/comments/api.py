"""Comment routes (threaded): comment on a post, reply, read threads, edit, delete."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from pydantic import BaseModel

from tidings.auth.deps import Viewer, limit, require
from tidings.auth.policy import Permission, Principal
from tidings.comments import service
from tidings.comments.schemas import CommentCreate, CommentOut, CommentSort, CommentUpdate
from tidings.core.deps import DbSession
from tidings.core.http import (
    IdPath,
    etag_for,
    expected_version,
    not_modified,
    parse_id,
    resource_headers,
)
from tidings.core.idempotency import IdempotencyKey, idempotent
from tidings.core.pagination import Page, PageParams, page_params, set_next_link

router = APIRouter(prefix="/api/v1", tags=["comments"])
Author = Annotated[Principal, Depends(require(Permission.CONTENT_WRITE))]
PageDep = Annotated[PageParams, Depends(page_params)]
Sort = Annotated[CommentSort, Query(description="`oldest` (default) or `newest` first.")]
IfMatch = Annotated[str | None, Header(alias="If-Match", max_length=200)]
IfNoneMatch = Annotated[str | None, Header(alias="If-None-Match", max_length=200)]


def _comment_headers(body: bytes) -> dict[str, str]:
    return resource_headers(body, "/api/v1/comments")


@router.post(
    "/posts/{post_id}/comments",
    status_code=201,
    response_model=CommentOut,
    summary="Comment on a post, or reply to a comment",
    responses={201: {"headers": {"ETag": {"schema": {"type": "string"}}}}},
    dependencies=[Depends(limit("comment_create"))],
)
async def create_comment(
    request: Request,
    post_id: IdPath,
    body: CommentCreate,
    author: Author,
    session: DbSession,
    _key: IdempotencyKey = None,
) -> Response:
    target = parse_id(post_id, "post")

    async def produce() -> BaseModel:
        return await service.create_comment(session, author, target, body)

    return await idempotent(request, session, author.user_id, 201, produce, _comment_headers)


@router.get(
    "/posts/{post_id}/comments",
    response_model=Page[CommentOut],
    summary="Top-level comments on a post",
)
async def list_comments(
    request: Request,
    response: Response,
    post_id: IdPath,
    viewer: Viewer,
    session: DbSession,
    page: PageDep,
    sort: Sort = "oldest",
) -> Page[CommentOut]:
    comments, cursor = await service.list_comments(
        session, viewer, parse_id(post_id, "post"), sort, page
    )
    set_next_link(request, response, cursor)
    return Page[CommentOut](data=comments, next_cursor=cursor)


@router.get(
    "/comments/{comment_id}/replies",
    response_model=Page[CommentOut],
    summary="Direct replies to a comment",
)
async def list_replies(
    request: Request,
    response: Response,
    comment_id: IdPath,
    viewer: Viewer,
    session: DbSession,
    page: PageDep,
    sort: Sort = "oldest",
) -> Page[CommentOut]:
    replies, cursor = await service.list_replies(
        session, viewer, parse_id(comment_id, "comment"), sort, page
    )
    set_next_link(request, response, cursor)
    return Page[CommentOut](data=replies, next_cursor=cursor)


@router.get(
    "/comments/{comment_id}",
    response_model=CommentOut,
    summary="Read a comment",
    responses={304: {"description": "Not modified (If-None-Match)"}},
)
async def read_comment(
    request: Request,
    comment_id: IdPath,
    viewer: Viewer,
    session: DbSession,
    _if_none_match: IfNoneMatch = None,
) -> Response:
    comment = await service.get_comment(session, viewer, parse_id(comment_id, "comment"))
    body = comment.model_dump_json().encode()
    etag = etag_for(comment.version, body)
    if not_modified(request, etag):
        return Response(status_code=304, headers={"ETag": etag})
    return Response(content=body, media_type="application/json", headers={"ETag": etag})


@router.patch(
    "/comments/{comment_id}",
    response_model=CommentOut,
    summary="Edit your comment (If-Match honoured)",
    responses={412: {"description": "If-Match no longer matches"}},
)
async def update_comment(
    request: Request,
    comment_id: IdPath,
    body: CommentUpdate,
    author: Author,
    session: DbSession,
    _if_match: IfMatch = None,
) -> Response:
    comment = await service.update_comment(
        session, author, parse_id(comment_id, "comment"), body, expected_version(request)
    )
    payload = comment.model_dump_json().encode()
    return Response(
        content=payload,
        media_type="application/json",
        headers={"ETag": etag_for(comment.version, payload)},
    )


@router.delete(
    "/comments/{comment_id}", status_code=204, summary="Delete a comment (author or moderator)"
)
async def delete_comment(comment_id: IdPath, author: Author, session: DbSession) -> Response:
    await service.delete_comment(session, author, parse_id(comment_id, "comment"))
    return Response(status_code=204)
