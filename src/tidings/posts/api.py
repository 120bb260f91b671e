"""Post routes: compose, read, edit, delete, like, share."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Request, Response
from pydantic import BaseModel

from tidings.accounts.schemas import PublicProfile
from tidings.auth.deps import Viewer, limit, require
from tidings.auth.policy import Permission, Principal
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
from tidings.core.pagination import Page, PageParams, json_page, page_params, set_next_link
from tidings.posts import service
from tidings.posts.schemas import (
    BookmarkStateOut,
    LikeStateOut,
    PostCreate,
    PostOut,
    PostUpdate,
    ShareStateOut,
)

router = APIRouter(prefix="/api/v1/posts", tags=["posts"])
Author = Annotated[Principal, Depends(require(Permission.CONTENT_WRITE))]
IfMatch = Annotated[str | None, Header(alias="If-Match", max_length=200)]
IfNoneMatch = Annotated[str | None, Header(alias="If-None-Match", max_length=200)]


def _post_headers(body: bytes) -> dict[str, str]:
    return resource_headers(body, "/api/v1/posts")


@router.post(
    "",
    status_code=201,
    response_model=PostOut,
    summary="Compose a post",
    responses={201: {"headers": {"ETag": {"schema": {"type": "string"}}}}},
    dependencies=[Depends(limit("post_create"))],
)
async def create_post(
    request: Request,
    body: PostCreate,
    author: Author,
    session: DbSession,
    _key: IdempotencyKey = None,
) -> Response:
    async def produce() -> BaseModel:
        return await service.create_post(session, author, body)

    return await idempotent(request, session, author.user_id, 201, produce, _post_headers)


@router.get(
    "/{post_id}",
    response_model=PostOut,
    summary="Read a post",
    responses={304: {"description": "Not modified (If-None-Match)"}},
)
async def read_post(
    request: Request,
    post_id: IdPath,
    viewer: Viewer,
    session: DbSession,
    _if_none_match: IfNoneMatch = None,
) -> Response:
    post = await service.get_post(session, viewer, parse_id(post_id, "post"))
    body = post.model_dump_json().encode()
    etag = etag_for(post.version, body)
    if not_modified(request, etag):
        return Response(status_code=304, headers={"ETag": etag})
    return Response(content=body, media_type="application/json", headers={"ETag": etag})


@router.patch(
    "/{post_id}",
    response_model=PostOut,
    summary="Edit your post (If-Match honoured)",
    responses={412: {"description": "If-Match no longer matches"}},
)
async def update_post(
    request: Request,
    post_id: IdPath,
    body: PostUpdate,
    author: Author,
    session: DbSession,
    _if_match: IfMatch = None,
) -> Response:
    post = await service.update_post(
        session, author, parse_id(post_id, "post"), body, expected_version(request)
    )
    payload = post.model_dump_json().encode()
    return Response(
        content=payload,
        media_type="application/json",
        headers={"ETag": etag_for(post.version, payload)},
    )


@router.delete("/{post_id}", status_code=204, summary="Delete a post (author or moderator)")
async def delete_post(post_id: IdPath, author: Author, session: DbSession) -> Response:
    await service.delete_post(session, author, parse_id(post_id, "post"))
    return Response(status_code=204)


@router.put(
    "/{post_id}/like",
    response_model=LikeStateOut,
    summary="Like (idempotent)",
    dependencies=[Depends(limit("like"))],
)
async def like(post_id: IdPath, author: Author, session: DbSession) -> LikeStateOut:
    return await service.like(session, author, parse_id(post_id, "post"))


@router.delete("/{post_id}/like", status_code=204, summary="Unlike (idempotent)")
async def unlike(post_id: IdPath, author: Author, session: DbSession) -> Response:
    await service.unlike(session, author, parse_id(post_id, "post"))
    return Response(status_code=204)


@router.get("/{post_id}/likes", response_model=Page[PublicProfile], summary="Who liked a post")
async def likes(
    request: Request,
    response: Response,
    post_id: IdPath,
    viewer: Viewer,
    session: DbSession,
    page: Annotated[PageParams, Depends(page_params)],
) -> Page[PublicProfile]:
    users, cursor = await service.likers(session, viewer, parse_id(post_id, "post"), page)
    set_next_link(request, response, cursor)
    return Page[PublicProfile](
        data=[PublicProfile.model_validate(u) for u in users], next_cursor=cursor
    )


@router.post(
    "/{post_id}/share",
    status_code=201,
    response_model=ShareStateOut,
    summary="Share a public post (once; repeating answers 200)",
    dependencies=[Depends(limit("share"))],
    responses={200: {"model": ShareStateOut, "description": "Already shared: nothing changed"}},
)
async def share(
    post_id: IdPath, author: Author, session: DbSession, response: Response
) -> ShareStateOut:
    state, created = await service.share(session, author, parse_id(post_id, "post"))
    response.status_code = 201 if created else 200
    return state


@router.delete("/{post_id}/share", status_code=204, summary="Undo a share (idempotent)")
async def unshare(post_id: IdPath, author: Author, session: DbSession) -> Response:
    await service.unshare(session, author, parse_id(post_id, "post"))
    return Response(status_code=204)


@router.put(
    "/{post_id}/bookmark",
    response_model=BookmarkStateOut,
    summary="Bookmark (idempotent)",
    dependencies=[Depends(limit("bookmark"))],
)
async def bookmark(post_id: IdPath, author: Author, session: DbSession) -> BookmarkStateOut:
    return await service.bookmark(session, author, parse_id(post_id, "post"))


@router.delete("/{post_id}/bookmark", status_code=204, summary="Remove a bookmark (idempotent)")
async def unbookmark(post_id: IdPath, author: Author, session: DbSession) -> Response:
    await service.unbookmark(session, author, parse_id(post_id, "post"))
    return Response(status_code=204)


me_router = APIRouter(prefix="/api/v1/me", tags=["posts"])
SelfReader = Annotated[Principal, Depends(require(Permission.SELF_READ))]


@me_router.get(
    "/bookmarks",
    response_model=Page[PostOut],
    summary="Your bookmarks, newest first (what you can no longer see is left out)",
)
async def my_bookmarks(
    request: Request,
    reader: SelfReader,
    session: DbSession,
    page: Annotated[PageParams, Depends(page_params)],
) -> Response:
    return json_page(request, *await service.bookmarks(session, reader, page))
