"""Timeline routes: home feed, a user's posts, a hashtag."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request, Response

from tidings.accounts.api import UsernamePath
from tidings.auth.deps import Viewer, require
from tidings.auth.policy import Permission, Principal
from tidings.core.deps import DbSession
from tidings.core.pagination import Page, PageParams, json_page, page_params
from tidings.posts.schemas import PostOut
from tidings.timelines import service
from tidings.timelines.schemas import TimelineFilters
from tidings.timelines.service import PostPage

router = APIRouter(prefix="/api/v1", tags=["timelines"])
Reader = Annotated[Principal, Depends(require(Permission.SELF_READ))]
PageDep = Annotated[PageParams, Depends(page_params)]
TagPath = Annotated[
    str,
    Path(pattern=r"^\w{1,100}$", max_length=100, description="A hashtag without '#', any case."),
]
HasMedia = Annotated[
    bool | None,
    Query(description="Only posts with (true) or without (false) media; a share by its post."),
]


async def timeline_filters(
    include_shares: Annotated[bool, Query(description="Include shares (reposts).")] = True,
    has_media: HasMedia = None,
) -> TimelineFilters:
    return TimelineFilters(include_shares=include_shares, has_media=has_media)


Filters = Annotated[TimelineFilters, Depends(timeline_filters)]


def _page(request: Request, result: PostPage) -> Response:
    return json_page(request, *result)


@router.get(
    "/feed",
    response_model=Page[PostOut],
    summary="Your home feed: posts and shares by you and the people you follow, newest first",
)
async def home_feed(
    request: Request,
    reader: Reader,
    session: DbSession,
    page: PageDep,
    filters: Filters,
) -> Response:
    return _page(request, await service.home_feed(session, reader, page, filters))


@router.get(
    "/users/{username}/posts",
    response_model=Page[PostOut],
    summary="A user's posts and shares, newest first (as far as you may see them)",
)
async def user_posts(
    request: Request,
    username: UsernamePath,
    viewer: Viewer,
    session: DbSession,
    page: PageDep,
    filters: Filters,
) -> Response:
    result = await service.user_posts(session, viewer, username, page, filters)
    return _page(request, result)


@router.get(
    "/tags/{tag}/posts",
    response_model=Page[PostOut],
    summary="Public posts with a hashtag, newest first",
)
async def tag_posts(
    request: Request,
    tag: TagPath,
    viewer: Viewer,
    session: DbSession,
    page: PageDep,
    has_media: HasMedia = None,
) -> Response:
    filters = TimelineFilters(has_media=has_media)
    return _page(request, await service.tag_posts(session, viewer, tag, page, filters))
