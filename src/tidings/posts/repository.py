"""Queries on posts, their tags, mentions and likes, and the counters kept on them."""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache, lru_cache
from typing import Any

from sqlalchemy import (
    BigInteger,
    Integer,
    Select,
    bindparam,
    delete,
    literal,
    select,
    union_all,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from tidings.accounts.models import User
from tidings.core import rawsql
from tidings.core.cache import record_eviction
from tidings.core.db import insert_ignore
from tidings.graph.models import Block, Follow, Mute
from tidings.graph.repository import unblocked_with
from tidings.posts.facts import relations_changed
from tidings.posts.models import Bookmark, Like, Post, PostMention, PostTag

# BLOCKING: the viewer blocks them; BLOCKED_BY: they block the viewer
FOLLOWING, BLOCKING, LIKED, SHARED, MUTED, BLOCKED_BY = 1, 2, 3, 4, 5, 6


@cache
def _viewer_relations() -> Select[Any]:
    """The viewer's follows, blocks (either way) and mutes among some authors and likes and
    shares among some posts, as ``(relation, id)`` rows of one statement: one round trip for a page,
    built once (its tree and cache key are not rebuilt per request)."""
    viewer = bindparam("viewer_id", type_=BigInteger)
    authors = bindparam("authors", type_=BigInteger, expanding=True)
    posts = bindparam("posts", type_=BigInteger, expanding=True)

    def tag(relation: int) -> Any:
        return literal(relation, Integer).label("relation")

    return union_all(
        select(tag(FOLLOWING), Follow.followee_id.label("id")).where(
            Follow.follower_id == viewer, Follow.followee_id.in_(authors)
        ),
        select(tag(BLOCKING), Block.blocked_id).where(
            Block.blocker_id == viewer, Block.blocked_id.in_(authors)
        ),
        select(tag(BLOCKED_BY), Block.blocker_id).where(
            Block.blocked_id == viewer, Block.blocker_id.in_(authors)
        ),
        select(tag(MUTED), Mute.muted_id).where(
            Mute.muter_id == viewer, Mute.muted_id.in_(authors)
        ),
        select(tag(LIKED), Like.post_id).where(Like.user_id == viewer, Like.post_id.in_(posts)),
        select(tag(SHARED), Post.share_of_id).where(
            Post.author_id == viewer, Post.share_of_id.in_(posts)
        ),
    )  # type: ignore[return-value]


@cache
def _post_rows() -> Select[Any]:
    ids = bindparam("ids", type_=BigInteger, expanding=True)
    return select(*Post.__table__.columns).where(Post.__table__.c.id.in_(ids))


@lru_cache(maxsize=256)  # keyed by the statement object, itself built once
def _whole_rows(stmt: Select[Any]) -> Select[Any]:
    """``stmt`` (selecting a post entity) returning that entity's columns."""
    return stmt.with_only_columns(*stmt.selected_columns)


@cache
def _profile_rows(columns: tuple[str, ...]) -> Select[Any]:
    """``columns`` must include ``id``."""
    ids = bindparam("ids", type_=BigInteger, expanding=True)
    table = User.__table__
    return select(*(table.c[name] for name in columns)).where(table.c.id.in_(ids))


class PostRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, post_id: int, *, for_update: bool = False) -> Post | None:
        stmt = select(Post).where(Post.id == post_id)
        if for_update:
            stmt = stmt.with_for_update()
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def rows_of(self, stmt: Select[Any], params: dict[str, Any]) -> list[dict[str, Any]]:
        """The whole post rows a statement selecting post entities returns, as dicts, on the
        driver (:mod:`tidings.core.rawsql`): no ORM instances for a page only rendered."""
        columns = _whole_rows(stmt)
        names = [str(column.key) for column in columns.selected_columns]
        rows = await rawsql.fetch(self.session, columns, params)
        return [dict(zip(names, row, strict=True)) for row in rows]

    async def post_rows(self, ids: Iterable[int]) -> dict[int, dict[str, Any]]:
        """Whole post rows as dicts (what the row cache stores), on the driver."""
        rows = await rawsql.fetch_dicts(
            self.session, _post_rows(), {"ids": list(set(ids))}, generic=True
        )
        return {int(row["id"]): row for row in rows}

    async def profile_rows(self, ids: Iterable[int], columns: tuple[str, ...]) -> dict[int, Any]:
        """Some columns of some users, as dicts (what the row cache stores), on the driver."""
        wanted = list(set(ids))
        if not wanted:
            return {}
        rows = await rawsql.fetch_dicts(
            self.session, _profile_rows(columns), {"ids": wanted}, generic=True
        )
        return {int(row["id"]): row for row in rows}

    async def user_ids_by_usernames(self, usernames: Iterable[str]) -> list[int]:
        keys = [u.lower() for u in usernames]
        if not keys:
            return []
        stmt = select(User.id).where(User.username_key.in_(keys), User.suspended.is_(False))
        return list((await self.session.execute(stmt)).scalars())

    async def add(self, post: Post) -> Post:
        self.session.add(post)
        await self.session.flush()
        return post

    async def set_tags(self, post_id: int, tags: list[str], *, new: bool = False) -> None:
        """The post's hashtags become ``tags`` (``new``: a post just created has none to drop)."""
        if not new:
            await self.session.execute(delete(PostTag).where(PostTag.post_id == post_id))
        if tags:
            self.session.add_all(PostTag(tag=tag, post_id=post_id) for tag in tags)

    async def set_mentions(self, post_id: int, user_ids: list[int], *, new: bool = False) -> None:
        if not new:
            await self.session.execute(delete(PostMention).where(PostMention.post_id == post_id))
        if user_ids:
            self.session.add_all(PostMention(post_id=post_id, user_id=u) for u in user_ids)

    async def bump(self, post_id: int, **deltas: int) -> dict[str, int]:
        """Atomic counter changes, e.g. ``bump(id, like_count=+1)``; returns the counters'
        new values (the cached row is evicted at commit)."""
        record_eviction(self.session.info, "post", [post_id])
        values: dict[str, Any] = {
            name: getattr(Post, name) + delta for name, delta in deltas.items()
        }
        result = await self.session.execute(
            update(Post)
            .where(Post.id == post_id)
            .values(**values)
            .returning(*(getattr(Post, name) for name in deltas))
            .execution_options(synchronize_session=False)
        )
        row = result.first()
        return dict(zip(deltas, row, strict=True)) if row is not None else {}

    async def bump_user(self, user_id: int, **deltas: int) -> None:
        values: dict[str, Any] = {
            name: getattr(User, name) + delta for name, delta in deltas.items()
        }
        await self.session.execute(
            update(User)
            .where(User.id == user_id)
            .values(**values)
            .execution_options(synchronize_session=False)
        )

    async def add_like(self, post_id: int, user_id: int) -> int | None:
        """The post's like count with this like, or None when the user already liked it."""
        added = await insert_ignore(
            self.session, Like, {"post_id": post_id, "user_id": user_id}, ["post_id", "user_id"]
        )
        relations_changed(self.session.info, user_id)
        if not added:
            return None
        return (await self.bump(post_id, like_count=+1)).get("like_count")

    async def remove_like(self, post_id: int, user_id: int) -> bool:
        result = await self.session.execute(
            delete(Like).where(Like.post_id == post_id, Like.user_id == user_id).returning(Like.id)
        )
        relations_changed(self.session.info, user_id)
        removed = result.first() is not None
        if removed:
            await self.bump(post_id, like_count=-1)
        return removed

    async def add_bookmark(self, user_id: int, post_id: int) -> bool:
        return await insert_ignore(
            self.session,
            Bookmark,
            {"user_id": user_id, "post_id": post_id},
            ["user_id", "post_id"],
        )

    async def remove_bookmark(self, user_id: int, post_id: int) -> bool:
        result = await self.session.execute(
            delete(Bookmark)
            .where(Bookmark.user_id == user_id, Bookmark.post_id == post_id)
            .returning(Bookmark.id)
        )
        return result.first() is not None

    async def bookmarks_page(
        self, user_id: int, limit: int, before: int | None
    ) -> list[tuple[int, Post]]:
        """(bookmark id, post) newest bookmark first; keyset on ``bookmarks (user_id, id)``.
        What the viewer may still see is decided when the page is rendered."""
        stmt = (
            select(Bookmark.id, Post)
            .join(Post, Post.id == Bookmark.post_id)
            .where(Bookmark.user_id == user_id)
            .order_by(Bookmark.id.desc())
            .limit(limit + 1)
        )
        if before is not None:
            stmt = stmt.where(Bookmark.id < before)
        return [(bid, post) for bid, post in (await self.session.execute(stmt)).all()]

    async def viewer_relations(
        self, viewer_id: int, authors: Iterable[int], posts: Iterable[int]
    ) -> dict[int, set[int]]:
        """``{FOLLOWING: ..., BLOCKING: ..., BLOCKED_BY: ..., MUTED: ..., LIKED: ...,
        SHARED: ...}`` for the viewer, among ``authors`` (follows, blocks each way, mutes) and
        ``posts`` (likes, shares)."""
        found: dict[int, set[int]] = {
            key: set() for key in (FOLLOWING, BLOCKING, BLOCKED_BY, MUTED, LIKED, SHARED)
        }
        among_authors, among_posts = sorted(set(authors)), sorted(set(posts))
        if not among_authors and not among_posts:
            return found
        params = {"viewer_id": viewer_id, "authors": among_authors, "posts": among_posts}
        for relation, other in await rawsql.fetch(
            self.session, _viewer_relations(), params, generic=True
        ):
            found[int(relation)].add(int(other))
        return found

    async def share_of(self, user_id: int, post_id: int) -> Post | None:
        stmt = select(Post).where(Post.author_id == user_id, Post.share_of_id == post_id)
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def add_share(self, user_id: int, post_id: int, has_media: bool) -> bool:
        added = await insert_ignore(
            self.session,
            Post,
            {
                "author_id": user_id,
                "share_of_id": post_id,
                "kind": "share",
                "text": "",
                "visibility": "public",
                "media": [],
                "links": [],
                # a copy of the shared post's flag (media never change), so timelines can
                # filter shares by media on the row itself
                "has_media": has_media,
            },
            ["author_id", "share_of_id"],
        )
        relations_changed(self.session.info, user_id)
        if added:
            await self.bump(post_id, share_count=+1)
        return added

    async def remove_share(self, user_id: int, post_id: int) -> int | None:
        result = await self.session.execute(
            delete(Post)
            .where(Post.author_id == user_id, Post.share_of_id == post_id)
            .returning(Post.id)
        )
        relations_changed(self.session.info, user_id)
        row = result.first()
        if row is not None:
            await self.bump(post_id, share_count=-1)
            # deleted with SQL: the cached row goes after the commit (feeds filter on it)
            record_eviction(self.session.info, "post", [row[0]])
            return int(row[0])
        return None

    async def delete_shares_of(self, post_id: int) -> int:
        result = await self.session.execute(
            delete(Post).where(Post.share_of_id == post_id).returning(Post.id, Post.author_id)
        )
        rows = result.all()
        record_eviction(self.session.info, "post", [share_id for share_id, _ in rows])
        relations_changed(self.session.info, *{author for _, author in rows})
        return len(rows)

    async def likers_page(
        self, post_id: int, limit: int, before: int | None, viewer_id: int | None
    ) -> list[tuple[int, User]]:
        """(like id, user) newest first; keyset on ``likes (post_id, id)``."""
        stmt = (
            select(Like.id, User)
            .join(User, User.id == Like.user_id)
            .where(Like.post_id == post_id, User.suspended.is_(False))
            .order_by(Like.id.desc())
            .limit(limit + 1)
        )
        if before is not None:
            stmt = stmt.where(Like.id < before)
        stmt = stmt.where(unblocked_with(viewer_id, Like.user_id))
        return [(lid, user) for lid, user in (await self.session.execute(stmt)).all()]
