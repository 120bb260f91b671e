"""Timeline use cases: the home feed, a user's posts, a hashtag. Services never commit."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from tidings.auth.policy import Permission, Principal
from tidings.core.pagination import PageParams, paginate
from tidings.feeds.service import feed_rows
from tidings.feeds.store import store_of
from tidings.graph.repository import GraphRepository
from tidings.graph.service import visible_user_and_relationship
from tidings.posts import parsing
from tidings.posts.cache import PostView
from tidings.posts.views import render_page
from tidings.timelines.repository import (
    ALL_VISIBILITIES,
    FOLLOWER_VISIBILITIES,
    PUBLIC_ONLY,
    TimelineRepository,
)
from tidings.timelines.schemas import TimelineFilters

PostPage = tuple[list[dict[str, Any]], str | None]  # bodies as PostOut serialises them


def _before(params: PageParams) -> int | None:
    """The id of the last post served (400 for a cursor that is not ours)."""
    key = params.key("id")
    return int(key["id"]) if key else None


async def _render(
    session: AsyncSession, viewer: Principal | None, rows: list[PostView], params: PageParams
) -> PostPage:
    page, cursor = paginate(rows, params.limit, lambda post: {"id": post.id})
    return await render_page(session, viewer, page), cursor


async def home_feed(
    session: AsyncSession, viewer: Principal, params: PageParams, filters: TimelineFilters
) -> PostPage:
    """Posts and shares by the viewer and the people they follow, newest first; minus deleted
    posts, others' private posts, muted authors, users blocked either way, suspended authors,
    and shares of posts the viewer may not see or whose author they muted."""
    before = _before(params)
    store = store_of(session)  # Redis timelines (TIDINGS_FEED_STORE=redis), else pull only
    if store is not None:
        rows = await feed_rows(store, session, viewer.user_id, params.limit + 1, before, filters)
    else:
        rows = await TimelineRepository(session).home_feed(
            viewer.user_id, params.limit + 1, before, filters
        )
    return await _render(session, viewer, rows, params)


async def user_posts(
    session: AsyncSession,
    viewer: Principal | None,
    username: str,
    params: PageParams,
    filters: TimelineFilters,
) -> PostPage:
    """A user's posts and shares, newest first: public ones for anyone, followers-only ones for
    their followers, all for themselves and moderators. 404 when they block the viewer; empty
    when the viewer blocks them."""
    before = _before(params)
    user, rel = await visible_user_and_relationship(session, username, viewer)
    moderator = viewer is not None and viewer.can(Permission.CONTENT_MODERATE)
    visibilities: tuple[str, ...] = PUBLIC_ONLY
    if viewer is not None and (moderator or viewer.user_id == user.id):
        visibilities = ALL_VISIBILITIES
    elif viewer is not None:
        rel = rel or await GraphRepository(session).relationship(viewer.user_id, user.id)
        if rel.blocking or rel.blocked_by:  # the viewer blocks them
            return [], None
        if rel.following:
            visibilities = FOLLOWER_VISIBILITIES
    rows = await TimelineRepository(session).user_posts(
        user.id,
        params.limit + 1,
        before,
        filters,
        viewer_id=viewer.user_id if viewer else None,
        visibilities=visibilities,
        moderator=moderator,
    )
    return await _render(session, viewer, rows, params)


async def tag_posts(
    session: AsyncSession,
    viewer: Principal | None,
    tag: str,
    params: PageParams,
    filters: TimelineFilters,
) -> PostPage:
    """Public posts with ``#tag`` (any case), newest first; minus suspended authors and users
    blocked either way with the viewer."""
    before = _before(params)
    found = parsing.hashtags(f"#{tag}")  # the tag exactly as posts store it
    if not found:  # e.g. only digits: never a tag
        return [], None
    rows = await TimelineRepository(session).tag_posts(
        found[0],
        params.limit + 1,
        before,
        filters,
        viewer_id=viewer.user_id if viewer else None,
    )
    return await _render(session, viewer, rows, params)
