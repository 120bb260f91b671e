"""Erasing deleted accounts, in the background.

``DELETE /api/v1/me`` (or an admin's ``DELETE /api/v1/admin/users/{username}``) closes an
account at once (:func:`tidings.accounts.service.delete_account`): no sign-in, no profile,
the personal fields blanked. What the account made is erased here, by a loop that runs
wherever the relay runs, in small batches of one short transaction each, through the same
code paths a user's own deletes take, so every counter stays exact and every change leaves
its event (feeds, caches, notifications and webhooks follow as they do for a user's deletes):

1. posts: live ones deleted (a share undone), then every post's text, media, links, hashtags
   and mentions blanked (also posts deleted before);
2. comments: live ones deleted (threads keep a placeholder where others replied), then their
   text blanked;
3. likes, follows (both ways), the account's blocks and mutes: removed (with their events),
   then others' blocks and mutes of the account, follow requests either way and the
   account's bookmarks (without: no one undid anything);
4. notifications addressed to the account: deleted;
5. last, the username is freed (the row stays, as ``~<id>``, so what still refers to the
   account, such as the audit trail, keeps its meaning), ``erased_at`` is set, and the event
   ``user.erased`` tells the feed store to drop the account's lists (not earlier: while its
   follows last, a follower's read would rebuild them).

The state is in the database (``users.deleted_at`` / ``erased_at``), so a stopped process
leaves nothing half done: the next pass carries on where the last committed batch ended.
Several processes may erase at once; the account's row lock makes them take turns.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from sqlalchemy import Select, delete, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from tidings.accounts.models import User
from tidings.audit.service import AuditAction, record_audit
from tidings.comments.models import Comment
from tidings.comments.service import remove_comment
from tidings.core.db import Database, utcnow
from tidings.core.stopping import stopped_within
from tidings.events import domain
from tidings.events.outbox import record
from tidings.graph.models import Block, Follow, FollowRequest, Mute
from tidings.graph.repository import GraphRepository
from tidings.notifications.models import NotificationGroup
from tidings.posts.models import Bookmark, Like, Post, PostMention, PostTag
from tidings.posts.repository import PostRepository
from tidings.posts.service import remove_post
from tidings.settings import Settings

log = structlog.get_logger("tidings.erasure")

ACCOUNTS_PER_PASS = 10

# one step of the erasure: handles up to ``limit`` rows of one kind; returns how many
Step = Callable[[AsyncSession, int, int], Awaitable[int]]


async def _posts(session: AsyncSession, user_id: int, limit: int) -> int:
    stmt = (
        select(Post)
        .where(
            Post.author_id == user_id,
            or_(
                Post.deleted_at.is_(None),
                Post.text != "",
                Post.has_media,
                func.json_array_length(Post.links) > 0,  # a quote may have links, no text
            ),
        )
        .order_by(Post.id)
        .limit(limit)
        .with_for_update()
    )
    posts = list((await session.execute(stmt)).scalars())
    scrubbed: list[int] = []
    for post in posts:
        live_share = post.kind == "share" and post.deleted_at is None
        if post.deleted_at is None:
            await remove_post(session, post, actor_id=user_id)
        if live_share:
            continue  # a share is its row: undoing it deleted the row
        post.text = ""
        post.media = []
        post.links = []
        post.has_media = False
        scrubbed.append(post.id)
    if scrubbed:
        await session.execute(delete(PostTag).where(PostTag.post_id.in_(scrubbed)))
        await session.execute(delete(PostMention).where(PostMention.post_id.in_(scrubbed)))
    return len(posts)


async def _comments(session: AsyncSession, user_id: int, limit: int) -> int:
    stmt = (
        select(Comment)
        .where(
            Comment.author_id == user_id,
            or_(Comment.deleted_at.is_(None), Comment.text != ""),
        )
        .order_by(Comment.id)
        .limit(limit)
        .with_for_update()
    )
    comments = list((await session.execute(stmt)).scalars())
    for comment in comments:
        if comment.deleted_at is None:
            await remove_comment(session, comment, actor_id=user_id)
        comment.text = ""
    return len(comments)


async def _likes(session: AsyncSession, user_id: int, limit: int) -> int:
    stmt = select(Like.post_id).where(Like.user_id == user_id).order_by(Like.id).limit(limit)
    post_ids = list((await session.execute(stmt)).scalars())
    repo = PostRepository(session)
    for post_id in post_ids:
        if await repo.remove_like(post_id, user_id):
            record(session, domain.PostUnliked(post_id=post_id, user_id=user_id))
    return len(post_ids)


async def _follows(session: AsyncSession, user_id: int, limit: int) -> int:
    stmt = (
        select(Follow.follower_id, Follow.followee_id)
        .where(or_(Follow.follower_id == user_id, Follow.followee_id == user_id))
        .limit(limit)
    )
    pairs = [(int(a), int(b)) for a, b in await session.execute(stmt)]
    graph = GraphRepository(session)
    for follower_id, followee_id in pairs:
        if await graph.remove_follow(follower_id, followee_id):
            record(session, domain.UserUnfollowed(user_id=follower_id, target_user_id=followee_id))
    return len(pairs)


async def _remove_each(
    session: AsyncSession,
    others: Select[int],
    limit: int,
    remove: Callable[[int], Awaitable[object]],
) -> int:
    """One batch of an account's blocks or mutes: the other side of up to ``limit`` edges
    (``others``), each removed through ``remove``; returns how many were selected."""
    batch = list((await session.execute(others.limit(limit))).scalars())
    for other in batch:
        await remove(other)
    return len(batch)


async def _blocks_and_mutes(session: AsyncSession, user_id: int, limit: int) -> int:
    """The account's own blocks and mutes (others' blocks of it are theirs, and stay)."""
    graph = GraphRepository(session)

    async def unblock(other: int) -> None:
        if await graph.remove_block(user_id, other):
            record(session, domain.UserUnblocked(user_id=user_id, target_user_id=other))

    async def unmute(other: int) -> None:
        if await graph.remove_mute(user_id, other):
            record(session, domain.UserUnmuted(user_id=user_id, target_user_id=other))

    blocked = select(Block.blocked_id).where(Block.blocker_id == user_id)
    muted = select(Mute.muted_id).where(Mute.muter_id == user_id)
    removed = await _remove_each(session, blocked, limit, unblock)
    return removed + await _remove_each(session, muted, limit, unmute)


async def _blocked_and_muted_by_others(session: AsyncSession, user_id: int, limit: int) -> int:
    """Others' blocks and mutes of the account: nothing to keep once it is erased, and they
    could not undo them (the account is a 404). Removed without an event: no one unblocked
    anyone; their cached relations are evicted as for any change."""
    graph = GraphRepository(session)

    async def unblock(other: int) -> None:
        await graph.remove_block(other, user_id)

    async def unmute(other: int) -> None:
        await graph.remove_mute(other, user_id)

    blockers = select(Block.blocker_id).where(Block.blocked_id == user_id)
    muters = select(Mute.muter_id).where(Mute.muted_id == user_id)
    removed = await _remove_each(session, blockers, limit, unblock)
    return removed + await _remove_each(session, muters, limit, unmute)


async def _bookmarks(session: AsyncSession, user_id: int, limit: int) -> int:
    """The account's bookmarks (seen by nobody else; no event)."""
    ids = select(Bookmark.id).where(Bookmark.user_id == user_id)
    batch = list((await session.execute(ids.limit(limit))).scalars())
    if batch:
        await session.execute(delete(Bookmark).where(Bookmark.id.in_(batch)))
    return len(batch)


async def _follow_requests(session: AsyncSession, user_id: int, limit: int) -> int:
    """Follow requests either way: nobody can answer or withdraw them once the account is
    gone (no event: no one followed or unfollowed anyone)."""
    ids = select(FollowRequest.id).where(
        or_(FollowRequest.requester_id == user_id, FollowRequest.target_id == user_id)
    )
    batch = list((await session.execute(ids.limit(limit))).scalars())
    if batch:
        await session.execute(delete(FollowRequest).where(FollowRequest.id.in_(batch)))
    return len(batch)


async def _notifications(session: AsyncSession, user_id: int, limit: int) -> int:
    ids = select(NotificationGroup.id).where(NotificationGroup.recipient_id == user_id)
    batch = list((await session.execute(ids.limit(limit))).scalars())
    if batch:
        await session.execute(delete(NotificationGroup).where(NotificationGroup.id.in_(batch)))
    return len(batch)


STEPS: tuple[Step, ...] = (
    _posts,
    _comments,
    _likes,
    _follows,
    _blocks_and_mutes,
    _blocked_and_muted_by_others,
    _follow_requests,
    _bookmarks,
    _notifications,
)


async def _finish(session: AsyncSession, user: User) -> None:
    user.username = user.username_key = f"~{user.id}"  # outside USERNAME_PATTERN: never taken
    user.erased_at = utcnow()
    await record_audit(session, AuditAction.ACCOUNT_ERASED, target_type="user", target_id=user.id)
    record(session, domain.UserErased(user_id=user.id))


async def erase_account(
    db: Database, user_id: int, *, batch: int, max_batches: int, stop: asyncio.Event | None = None
) -> bool:
    """Erase up to ``max_batches`` batches of the account's rows, one transaction each; True
    once the account is fully erased (by this call)."""
    for _ in range(max_batches):
        if stop is not None and stop.is_set():
            return False
        async with db.unit_of_work(write=True) as session:
            user = await session.get(User, user_id, with_for_update=True)
            if user is None or user.deleted_at is None or user.erased_at is not None:
                return False
            for step in STEPS:
                if await step(session, user_id, batch):
                    break  # this batch's work: committed now, the next step next time
            else:
                await _finish(session, user)
                log.info("account_erased", user_id=user_id)
                return True
    return False


async def erase_pending(
    db: Database, *, batch: int, max_batches: int, stop: asyncio.Event | None = None
) -> int:
    """One pass over the accounts waiting for erasure (oldest request first); returns how many
    were finished."""
    async with db.unit_of_work(write=False) as session:
        pending = select(User.id).where(User.deleted_at.is_not(None), User.erased_at.is_(None))
        ids = list(
            (
                await session.execute(pending.order_by(User.deleted_at).limit(ACCOUNTS_PER_PASS))
            ).scalars()
        )
    finished = 0
    for user_id in ids:
        finished += await erase_account(
            db, user_id, batch=batch, max_batches=max_batches, stop=stop
        )
    return finished


async def run_erasure(stop: asyncio.Event, container: Any) -> None:
    """The background loop registered with the event runtime (``container`` is the app's): a
    pass every ``TIDINGS_ERASURE_INTERVAL_SECONDS``. A failed pass is logged and retried."""
    settings: Settings = container.settings
    while not await stopped_within(stop, settings.erasure_interval_seconds):
        try:
            await erase_pending(
                container.db,
                batch=settings.erasure_batch,
                max_batches=settings.erasure_max_batches,
                stop=stop,
            )
        except Exception as exc:
            log.warning("erasure_failed", error=f"{type(exc).__name__}: {exc}")
