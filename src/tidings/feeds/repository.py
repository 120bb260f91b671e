"""Database queries of the feed store: rebuilding lists, followers for fan-out, filtering."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Integer,
    Select,
    bindparam,
    literal,
    or_,
    select,
    true,
    union_all,
)
from sqlalchemy.ext.asyncio import AsyncSession

from tidings.accounts.models import User
from tidings.core import rawsql
from tidings.graph.models import Follow
from tidings.posts.cache import PostView, plain_posts
from tidings.posts.models import Post
from tidings.timelines.repository import (
    FOLLOWER_VISIBILITIES,
    cached_feed_filter,
)
from tidings.timelines.schemas import TimelineFilters


def _live(viewer_id: int) -> list[ColumnElement[bool]]:
    """Not deleted, and not someone else's private post."""
    return [
        Post.deleted_at.is_(None),
        or_(Post.author_id == viewer_id, Post.visibility.in_(FOLLOWER_VISIBILITIES)),
    ]


@cache
def _followers_after() -> Select[int, int]:
    return (
        select(Follow.id, Follow.follower_id)
        .where(
            Follow.followee_id == bindparam("author_id", type_=BigInteger),
            Follow.id > bindparam("after", type_=BigInteger),
        )
        .order_by(Follow.id)
        .limit(bindparam("limit", type_=Integer))
    )


@cache
def _follower_count() -> Select[Any]:
    return select(User.follower_count).where(User.id == bindparam("user_id", type_=BigInteger))


@cache
def _followed_among() -> Select[Any]:
    return select(Follow.followee_id).where(
        Follow.follower_id == bindparam("viewer_id", type_=BigInteger),
        Follow.followee_id.in_(bindparam("others", type_=BigInteger, expanding=True)),
    )


class FeedRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    @property
    def _lateral(self) -> bool:
        return self.session.get_bind().dialect.name == "postgresql"

    async def filter_feed(
        self, viewer_id: int, ids: Sequence[int], filters: TimelineFilters
    ) -> list[PostView]:
        """Which of ``ids`` the home feed shows, newest first: the pull query's own conditions
        (follows, mutes, blocks, suspensions, visibility, deleted posts, shares, filters),
        restricted to the candidates (primary-key probes)."""
        if not ids:
            return []
        stmt = cached_feed_filter(filters.include_shares, filters.has_media)
        params = {"viewer_id": viewer_id, "fetch": len(ids), "candidates": list(ids)}
        return await plain_posts(self.session, stmt, params)

    def _timeline_sources(self, viewer_id: int, cap: int) -> Select[Any]:
        """A superset of the feed: the newest ``cap`` live posts of the viewer and the people
        they follow — mutes, blocks, suspensions and shares' targets are left to read time, so
        undoing any of them needs no repair of the stored timeline."""

        if not self._lateral:
            followees = select(Follow.followee_id).where(Follow.follower_id == viewer_id)
            return (
                select(Post.id)
                .where(
                    or_(Post.author_id.in_(followees), Post.author_id == viewer_id),
                    *_live(viewer_id),
                )
                .order_by(Post.id.desc())
                .limit(cap)
            )
        authors = union_all(
            select(Follow.followee_id).where(Follow.follower_id == viewer_id),
            select(literal(viewer_id, BigInteger)),
        ).subquery("authors")
        newest = (
            select(Post.id)
            .where(Post.author_id == authors.c[0], *_live(viewer_id))
            .order_by(Post.id.desc())
            .limit(cap)
            .lateral("newest")
        )
        return (
            select(newest.c.id)
            .select_from(authors.join(newest, true()))
            .order_by(newest.c.id.desc())
            .limit(cap)
        )

    async def timeline_ids(self, viewer_id: int, cap: int) -> list[int]:
        rows = await self.session.execute(self._timeline_sources(viewer_id, cap))
        return [int(i) for i in rows.scalars()]

    async def author_ids(self, author_id: int, cap: int, since: int = 0) -> list[int]:
        """The author's newest live, non-private post ids (at or above ``since``)."""
        stmt = (
            select(Post.id)
            .where(
                Post.author_id == author_id,
                Post.deleted_at.is_(None),
                Post.visibility.in_(FOLLOWER_VISIBILITIES),
                Post.id >= since,
            )
            .order_by(Post.id.desc())
            .limit(cap)
        )
        return [int(i) for i in (await self.session.execute(stmt)).scalars()]

    async def followers_after(
        self, author_id: int, after: int, limit: int
    ) -> list[tuple[int, int]]:
        """(follow id, follower id) for a keyset walk over ``ix_follows_followee_id_id``."""
        params = {"author_id": author_id, "after": after, "limit": limit}
        rows = await rawsql.fetch(self.session, _followers_after(), params)
        return [(int(f), int(u)) for f, u in rows]

    async def follower_count(self, user_id: int) -> int:
        rows = await rawsql.fetch(self.session, _follower_count(), {"user_id": user_id})
        return int(rows[0][0] or 0) if rows else 0

    async def followed_among(self, viewer_id: int, others: Sequence[int]) -> list[int]:
        """Which of ``others`` the viewer follows (on every feed read that merges authors)."""
        if not others:
            return []
        params = {"viewer_id": viewer_id, "others": list(others)}
        return sorted(
            int(row[0])
            for row in await rawsql.fetch(self.session, _followed_among(), params, generic=True)
        )
