"""Timeline queries: the home feed, a user's posts and a hashtag, newest first.

Each is a keyset page on the time-ordered post id (``id < cursor ORDER BY id DESC LIMIT n``) read
from an index range, with every visibility rule applied in SQL, so a page is full whenever more
rows exist and a cursor never skips a row:

* a user's timeline: ``ix_posts_author_id_id (author_id, id)``;
* a hashtag: the ``post_tags`` primary key ``(tag, post_id)``;
* the home feed: on PostgreSQL a ``LATERAL`` join over the viewer's follows (and the viewer) that
  reads each author's newest rows from ``ix_posts_author_id_id`` (see :func:`home_feed_lateral`);
  on SQLite, which has no ``LATERAL``, ``author_id IN (followees) OR author_id = viewer``.
  Both apply the same conditions and return the same rows in the same order.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from sqlalchemy import (
    BigInteger,
    BindParameter,
    ColumnElement,
    Integer,
    Select,
    SQLColumnExpression,
    String,
    and_,
    bindparam,
    case,
    func,
    literal,
    not_,
    or_,
    select,
    true,
    union_all,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from tidings.accounts.models import User
from tidings.core import rawsql
from tidings.core.cache import cache_of
from tidings.graph.models import Block, Follow, Mute
from tidings.posts.cache import PostView, page_bodies, plain_posts
from tidings.posts.models import Post, PostTag
from tidings.timelines.schemas import TimelineFilters

ALL_VISIBILITIES = ("public", "followers", "private")
FOLLOWER_VISIBILITIES = ("public", "followers")
PUBLIC_ONLY = ("public",)

# ``Post`` or an alias of it (SQLAlchemy types aliases loosely).
PostEntity = Any
# A viewer (or cursor, or page size) is a plain value, or a bound parameter in the statements
# below that are built once and cached: building one of these trees and its cache key costs
# milliseconds of CPU (≈3 ms for the feed filter, ≈10 ms for the LATERAL merge), a cached
# statement only its parameters.
Value = int | ColumnElement[int]

VIEWER: BindParameter[int] = bindparam("viewer_id", type_=BigInteger)
AUTHOR: BindParameter[int] = bindparam("author_id", type_=BigInteger)
BEFORE: BindParameter[int] = bindparam("before", type_=BigInteger)
FETCH: BindParameter[int] = bindparam("fetch", type_=Integer)
TAG: BindParameter[str] = bindparam("tag", type_=String)
CANDIDATES: BindParameter[int] = bindparam("candidates", type_=BigInteger, expanding=True)


def _expr(value: Value) -> ColumnElement[int]:
    return value if isinstance(value, ColumnElement) else literal(value, BigInteger)


def _active(user_id: SQLColumnExpression[int]) -> ColumnElement[bool]:
    """The user is not suspended: one primary-key probe on ``users`` per row (a scalar
    subquery, which PostgreSQL never turns into a hash join over every user)."""
    return select(User.suspended).where(User.id == user_id).scalar_subquery().is_(False)


def _blocked_either_way(viewer_id: Value, other: SQLColumnExpression[int]) -> ColumnElement[bool]:
    """``other`` blocks the viewer or is blocked by them.

    ``IN (SELECT ...)`` under ``NOT`` stays a hashed subplan on PostgreSQL: the viewer's blocks
    are read once per query (``uq_blocks_blocker_id_blocked_id``, ``ix_blocks_blocked_id``)
    instead of being probed, or rescanned, once per row.
    """
    return or_(
        other.in_(select(Block.blocked_id).where(Block.blocker_id == viewer_id)),
        other.in_(select(Block.blocker_id).where(Block.blocked_id == viewer_id)),
    )


def _muted(viewer_id: Value, other: SQLColumnExpression[int]) -> ColumnElement[bool]:
    """``other`` is muted by the viewer (the viewer's mutes are read once, as above)."""
    return other.in_(select(Mute.muted_id).where(Mute.muter_id == viewer_id))


def _follows(viewer_id: Value, other: SQLColumnExpression[int]) -> ColumnElement[bool]:
    return (
        select(Follow.id)
        .where(Follow.follower_id == viewer_id, Follow.followee_id == other)
        .exists()
    )


def _author_ok(
    author_id: SQLColumnExpression[int], viewer_id: Value | None, *, hide_muted: bool
) -> ColumnElement[bool]:
    """Not suspended, not blocked either way with the viewer, and (in the feed) not muted."""
    conditions = [_active(author_id)]
    if viewer_id is not None:
        conditions.append(~_blocked_either_way(viewer_id, author_id))
        if hide_muted:
            conditions.append(~_muted(viewer_id, author_id))
    return and_(*conditions)


def _shared_post_ok(
    share: PostEntity,
    viewer_id: Value | None,
    filters: TimelineFilters,
    *,
    moderator: bool,
    hide_muted: bool,
) -> ColumnElement[bool]:
    """The post a share points at exists, is not deleted, matches ``has_media`` and the viewer
    may see it (the rules of :meth:`tidings.posts.views.ViewContext.can_see`; in the home feed
    its author must not be muted either)."""
    target = aliased(Post, name="shared")
    conditions: list[ColumnElement[bool]] = [
        target.id == share.share_of_id,
        target.deleted_at.is_(None),
    ]
    if filters.has_media is not None:
        conditions.append(target.has_media.is_(filters.has_media))
    if not moderator:
        if viewer_id is None:
            conditions += [target.visibility == "public", _active(target.author_id)]
        else:
            audience = or_(
                target.visibility == "public",
                and_(target.visibility == "followers", _follows(viewer_id, target.author_id)),
            )
            others = and_(_author_ok(target.author_id, viewer_id, hide_muted=hide_muted), audience)
            conditions.append(or_(target.author_id == viewer_id, others))
    return select(target.id).where(*conditions).exists()


def _kinds(
    post: PostEntity,
    viewer_id: Value | None,
    filters: TimelineFilters,
    *,
    moderator: bool,
    hide_muted: bool,
) -> ColumnElement[bool]:
    """``include_shares`` and ``has_media`` (a share matches on the post it shares: share rows
    carry a copy of their post's ``has_media``, so the filter is on the row itself and
    ``ix_posts_author_id_id_media`` can serve it)."""
    media: list[ColumnElement[bool]] = []
    if filters.has_media is not None:
        # plain "has_media" (not "IS true") so the planner can match the partial index
        media.append(post.has_media if filters.has_media else not_(post.has_media))
    if not filters.include_shares:
        return and_(post.kind == "post", *media)
    shared_ok = _shared_post_ok(
        post, viewer_id, filters, moderator=moderator, hide_muted=hide_muted
    )
    return and_(*media, or_(post.kind == "post", and_(post.kind == "share", shared_ok)))


def _feed_conditions(
    post: PostEntity, viewer_id: Value, before: Value | None, filters: TimelineFilters
) -> list[ColumnElement[bool]]:
    """Per-post conditions of the home feed (the author is already the viewer or a followee
    that is neither suspended, blocked nor muted)."""
    conditions: list[ColumnElement[bool]] = [
        post.deleted_at.is_(None),
        or_(post.author_id == viewer_id, post.visibility.in_(FOLLOWER_VISIBILITIES)),
        _kinds(post, viewer_id, filters, moderator=False, hide_muted=True),
    ]
    if before is not None:
        conditions.append(post.id < before)
    return conditions


def _feed_followees(viewer_id: Value) -> Select[Any]:
    return select(Follow.followee_id).where(
        Follow.follower_id == viewer_id,
        _author_ok(Follow.followee_id, viewer_id, hide_muted=True),
    )


def home_feed_lateral(
    viewer_id: Value, fetch: Value, before: Value | None, filters: TimelineFilters
) -> Select[Post]:
    """The home feed on PostgreSQL: a bounded k-way merge of the authors' timelines.

    ``authors`` = the viewer's followees (minus suspended, blocked and muted ones) and the viewer.
    A plain ``LATERAL (... ORDER BY id DESC LIMIT n)`` per author reads up to ``n`` rows for
    every author; two passes read about one row per author plus at most ``n * n``:

    1. *heads*: each author's newest qualifying post below the cursor (``LIMIT 1`` per author).
       The ``n``-th newest head is a floor: ``n`` authors have a qualifying post at or above it,
       so the whole page lies at or above it (no floor when fewer than ``n`` authors qualify).
    2. per author, at most ``n`` qualifying posts in ``[floor, cursor)``, merged
       ``ORDER BY id DESC LIMIT n``. Authors whose newest post is below the floor cost one index
       probe and no rows.
    """
    authors = union_all(
        _feed_followees(viewer_id),
        select(_expr(viewer_id)),
    ).cte("feed_authors")  # referenced twice: PostgreSQL materializes it once
    author = authors.c[0]

    head_post = aliased(Post, name="h")
    head = (
        select(head_post.id)
        .where(
            head_post.author_id == author, *_feed_conditions(head_post, viewer_id, before, filters)
        )
        .order_by(head_post.id.desc())
        .limit(1)
        .lateral("head")
    )
    heads = (
        select(head.c.id)
        .select_from(authors.join(head, true()))
        .order_by(head.c.id.desc())
        .limit(fetch)
        .subquery("heads")
    )
    floor = (
        select(
            case((func.count() >= fetch, func.min(heads.c.id)), else_=literal(0, BigInteger)).label(
                "id"
            )
        )
        .select_from(heads)
        .cte("feed_floor")
    )

    candidate_post = aliased(Post, name="p")
    candidates = (
        select(candidate_post.id)
        .where(
            candidate_post.author_id == author,
            candidate_post.id >= floor.c.id,
            *_feed_conditions(candidate_post, viewer_id, before, filters),
        )
        .order_by(candidate_post.id.desc())
        .limit(fetch)
        .lateral("candidate")
    )
    page = (
        select(candidates.c.id)
        .select_from(floor.join(authors, true()).join(candidates, true()))
        .order_by(candidates.c.id.desc())
        .limit(fetch)
        .subquery("page")
    )
    return select(Post).join(page, Post.id == page.c.id).order_by(Post.id.desc())


def home_feed_in(
    viewer_id: Value, fetch: Value, before: Value | None, filters: TimelineFilters
) -> Select[Post]:
    """The home feed where ``LATERAL`` is missing (SQLite): same conditions, same order."""
    return (
        select(Post)
        .where(
            or_(Post.author_id.in_(_feed_followees(viewer_id)), Post.author_id == viewer_id),
            *_feed_conditions(Post, viewer_id, before, filters),
        )
        .order_by(Post.id.desc())
        .limit(fetch)
    )


def user_posts_statement(
    author_id: Value,
    fetch: Value,
    before: Value | None,
    filters: TimelineFilters,
    *,
    viewer_id: Value | None,
    visibilities: tuple[str, ...],
    moderator: bool,
) -> Select[Post]:
    stmt = (
        select(Post)
        .where(
            Post.author_id == author_id,
            Post.deleted_at.is_(None),
            Post.visibility.in_(visibilities),
            _kinds(Post, viewer_id, filters, moderator=moderator, hide_muted=False),
        )
        .order_by(Post.id.desc())
        .limit(fetch)
    )
    if before is not None:
        stmt = stmt.where(Post.id < before)
    return stmt


def tag_posts_statement(
    tag: str | ColumnElement[str],
    fetch: Value,
    before: Value | None,
    filters: TimelineFilters,
    *,
    viewer_id: Value | None,
) -> Select[Post]:
    stmt = (
        select(Post)
        .join(PostTag, PostTag.post_id == Post.id)
        .where(
            PostTag.tag == tag,
            Post.deleted_at.is_(None),
            Post.visibility == "public",
            Post.kind == "post",
            _author_ok(Post.author_id, viewer_id, hide_muted=False),
        )
        .order_by(PostTag.post_id.desc())
        .limit(fetch)
    )
    if filters.has_media is not None:
        stmt = stmt.where(Post.has_media.is_(filters.has_media))
    if before is not None:
        stmt = stmt.where(PostTag.post_id < before)
    return stmt


@lru_cache(maxsize=64)
def cached_home_feed(
    lateral: bool, paged: bool, include_shares: bool, has_media: bool | None
) -> Select[Post]:
    """The home feed statement for one shape, with ``VIEWER``, ``FETCH`` (and ``BEFORE``)."""
    filters = TimelineFilters(include_shares=include_shares, has_media=has_media)
    build = home_feed_lateral if lateral else home_feed_in
    return build(VIEWER, FETCH, BEFORE if paged else None, filters)


@lru_cache(maxsize=64)
def cached_feed_filter(include_shares: bool, has_media: bool | None) -> Select[Post]:
    """The home feed's conditions restricted to ``CANDIDATES`` (the feed store's proposal)."""
    filters = TimelineFilters(include_shares=include_shares, has_media=has_media)
    return home_feed_in(VIEWER, FETCH, None, filters).where(Post.id.in_(CANDIDATES))


@lru_cache(maxsize=128)
def _cached_user_posts(
    paged: bool,
    include_shares: bool,
    has_media: bool | None,
    signed_in: bool,
    visibilities: tuple[str, ...],
    moderator: bool,
) -> Select[Post]:
    filters = TimelineFilters(include_shares=include_shares, has_media=has_media)
    return user_posts_statement(
        AUTHOR,
        FETCH,
        BEFORE if paged else None,
        filters,
        viewer_id=VIEWER if signed_in else None,
        visibilities=visibilities,
        moderator=moderator,
    )


@lru_cache(maxsize=64)
def _cached_tag_posts(
    paged: bool, include_shares: bool, has_media: bool | None, signed_in: bool
) -> Select[Post]:
    filters = TimelineFilters(include_shares=include_shares, has_media=has_media)
    return tag_posts_statement(
        TAG, FETCH, BEFORE if paged else None, filters, viewer_id=VIEWER if signed_in else None
    )


def _binds(
    fetch: int, before: int | None, viewer_id: int | None, **more: object
) -> dict[str, object]:
    params: dict[str, object] = {"fetch": fetch, **more}
    if before is not None:
        params["before"] = before
    if viewer_id is not None:
        params["viewer_id"] = viewer_id
    return params


@lru_cache(maxsize=256)  # keyed by the statement object, itself built once
def _refs_only(stmt: Select[Any]) -> Select[Any]:
    """``stmt`` returning ``(id, author_id, share_of_id, quote_of_id)``."""
    c = stmt.selected_columns
    return stmt.with_only_columns(c.id, c.author_id, c.share_of_id, c.quote_of_id)


class TimelineRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    @property
    def _lateral(self) -> bool:
        return self.session.get_bind().dialect.name == "postgresql"

    async def _posts(self, stmt: Select[Post], params: dict[str, object]) -> list[PostView]:
        """The page's posts; with a row cache, the statement returns ids (on the driver, see
        :mod:`tidings.core.rawsql`) and the bodies come from the cache."""
        if cache_of(self.session) is None:
            return await plain_posts(self.session, stmt, params)
        rows = await rawsql.fetch(self.session, _refs_only(stmt), params)
        return await page_bodies(
            self.session,
            [(int(pid), int(author), share, quote) for pid, author, share, quote in rows],
        )

    async def home_feed(
        self, viewer_id: int, fetch: int, before: int | None, filters: TimelineFilters
    ) -> list[PostView]:
        # On PostgreSQL the LATERAL merge; JIT is off for every PostgreSQL connection
        # (core.db.create_engine): the merge's estimated cost grows with the follow count and
        # would otherwise trigger compilation.
        stmt = cached_home_feed(
            self._lateral, before is not None, filters.include_shares, filters.has_media
        )
        return await self._posts(stmt, _binds(fetch, before, viewer_id))

    async def user_posts(
        self,
        author_id: int,
        fetch: int,
        before: int | None,
        filters: TimelineFilters,
        *,
        viewer_id: int | None,
        visibilities: tuple[str, ...],
        moderator: bool,
    ) -> list[PostView]:
        stmt = _cached_user_posts(
            before is not None,
            filters.include_shares,
            filters.has_media,
            viewer_id is not None,
            tuple(visibilities),
            moderator,
        )
        return await self._posts(stmt, _binds(fetch, before, viewer_id, author_id=author_id))

    async def tag_posts(
        self,
        tag: str,
        fetch: int,
        before: int | None,
        filters: TimelineFilters,
        *,
        viewer_id: int | None,
    ) -> list[PostView]:
        stmt = _cached_tag_posts(
            before is not None, filters.include_shares, filters.has_media, viewer_id is not None
        )
        return await self._posts(stmt, _binds(fetch, before, viewer_id, tag=tag))
