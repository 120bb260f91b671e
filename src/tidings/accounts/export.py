"""The export of one's own data (``GET /api/v1/me/export``): everything stored that the account
made or that describes it, in one JSON document. Read-only; nothing here commits."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from tidings.accounts.models import User
from tidings.accounts.schemas import (
    Account,
    AccountExport,
    ExportedComment,
    ExportedIdentity,
    ExportedLike,
    ExportedPost,
    ExportedRelation,
    ExportedReport,
    ExportedSession,
)
from tidings.accounts.service import get_account
from tidings.auth.models import AuthSession
from tidings.auth.providers.models import UserIdentity
from tidings.comments.models import Comment
from tidings.core.db import utcnow
from tidings.graph.models import Block, Follow, Mute
from tidings.posts.models import Like, Post
from tidings.reports.models import Report


async def _relations(
    session: AsyncSession, mine: Any, theirs: Any, created: Any, user_id: int
) -> list[ExportedRelation]:
    """The other side of each edge where ``mine`` is the account, with their username."""
    stmt = (
        select(theirs, User.username, created)
        .join(User, User.id == theirs)
        .where(mine == user_id)
        .order_by(created)
    )
    return [
        ExportedRelation(user_id=other, username=name, created_at=at)
        for other, name, at in await session.execute(stmt)
    ]


async def export_account(session: AsyncSession, user_id: int) -> AccountExport:
    user = await get_account(session, user_id)

    async def rows(stmt: Any) -> list[Any]:
        return list((await session.execute(stmt)).scalars())

    identities = await rows(
        select(UserIdentity).where(UserIdentity.user_id == user_id).order_by(UserIdentity.id)
    )
    sessions = await rows(
        select(AuthSession).where(AuthSession.user_id == user_id).order_by(AuthSession.id.desc())
    )
    posts = await rows(select(Post).where(Post.author_id == user_id).order_by(Post.id))
    comments = await rows(select(Comment).where(Comment.author_id == user_id).order_by(Comment.id))
    likes = await session.execute(
        select(Like.post_id, Like.created_at).where(Like.user_id == user_id).order_by(Like.id)
    )
    reports = await rows(select(Report).where(Report.reporter_id == user_id).order_by(Report.id))
    return AccountExport(
        exported_at=utcnow(),
        account=Account.model_validate(user),
        identities=[ExportedIdentity.model_validate(i) for i in identities],
        sessions=[ExportedSession.model_validate(s) for s in sessions],
        posts=[ExportedPost.model_validate(p) for p in posts],
        comments=[
            ExportedComment(
                id=c.id,
                post_id=c.post_id,
                parent_comment_id=c.parent_id,
                text=c.text,
                created_at=c.created_at,
                edited_at=c.edited_at,
                deleted_at=c.deleted_at,
            )
            for c in comments
        ],
        likes=[ExportedLike(post_id=post_id, created_at=at) for post_id, at in likes],
        following=await _relations(
            session, Follow.follower_id, Follow.followee_id, Follow.created_at, user_id
        ),
        followers=await _relations(
            session, Follow.followee_id, Follow.follower_id, Follow.created_at, user_id
        ),
        blocks=await _relations(
            session, Block.blocker_id, Block.blocked_id, Block.created_at, user_id
        ),
        mutes=await _relations(session, Mute.muter_id, Mute.muted_id, Mute.created_at, user_id),
        reports=[ExportedReport.model_validate(r) for r in reports],
    )
