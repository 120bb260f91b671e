"""Queries on comments and the reply counters kept on them."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from tidings.accounts.models import User
from tidings.comments.models import Comment
from tidings.graph.repository import unblocked_with


class CommentRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, comment_id: int, *, for_update: bool = False) -> Comment | None:
        stmt = select(Comment).where(Comment.id == comment_id)
        if for_update:
            stmt = stmt.with_for_update()
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def add(self, comment: Comment) -> Comment:
        self.session.add(comment)
        await self.session.flush()
        return comment

    async def bump_replies(self, comment_id: int, delta: int) -> tuple[int, bool, int | None]:
        """Atomically ``reply_count = reply_count + delta``; returns the new count, whether the
        comment is deleted, and its parent id."""
        result = await self.session.execute(
            update(Comment)
            .where(Comment.id == comment_id)
            .values(reply_count=Comment.reply_count + delta)
            .returning(Comment.reply_count, Comment.deleted_at, Comment.parent_id)
            .execution_options(synchronize_session=False)
        )
        count, deleted_at, parent_id = result.one()
        return int(count), deleted_at is not None, parent_id

    async def top_level_page(
        self,
        post_id: int,
        limit: int,
        after: int | None,
        *,
        newest: bool,
        viewer_id: int | None,
    ) -> list[tuple[Comment, User]]:
        """Top-level comments of a post; keyset on ``comments (post_id, parent_id, id)``."""
        where = [Comment.post_id == post_id, Comment.parent_id.is_(None)]
        # ordering by (parent_id, id) lets PostgreSQL walk ix_comments_post_id_parent_id_id:
        # "parent_id IS NULL" does not count as an equality for sort elimination
        return await self._page(
            where, limit, after, newest=newest, viewer_id=viewer_id, lead=[Comment.parent_id]
        )

    async def replies_page(
        self,
        parent_id: int,
        limit: int,
        after: int | None,
        *,
        newest: bool,
        viewer_id: int | None,
    ) -> list[tuple[Comment, User]]:
        """Direct replies to a comment; keyset on ``comments (parent_id, id)``."""
        where = [Comment.parent_id == parent_id]
        return await self._page(where, limit, after, newest=newest, viewer_id=viewer_id)

    async def _page(
        self,
        where: list[ColumnElement[bool]],
        limit: int,
        after: int | None,
        *,
        newest: bool,
        viewer_id: int | None,
        lead: list[Any] | None = None,
    ) -> list[tuple[Comment, User]]:
        """(comment, author) in id order, fetched ``limit + 1`` with authors in the same query.

        Live comments by suspended authors or by users blocked either way with the viewer
        are left out; deleted comments are kept as tombstones only while replies hang below
        them.
        """
        live: list[Any] = [Comment.deleted_at.is_(None), User.suspended.is_(False)]
        live.append(unblocked_with(viewer_id, Comment.author_id))
        shown = or_(
            and_(*live),
            and_(Comment.deleted_at.is_not(None), Comment.reply_count > 0),
        )
        columns = [*(lead or []), Comment.id]
        order = [c.desc() if newest else c.asc() for c in columns]
        stmt = (
            select(Comment, User)
            .join(User, User.id == Comment.author_id)
            .where(*where, shown)
            .order_by(*order)
            .limit(limit + 1)
        )
        if after is not None:
            stmt = stmt.where(Comment.id < after if newest else Comment.id > after)
        return [(comment, user) for comment, user in (await self.session.execute(stmt)).all()]
