"""Comment use cases: comment, reply, read threads, edit, delete. Services never commit.

Threads stay intact when comments are deleted: a deleted comment becomes a tombstone (text and
author hidden) and stays in lists while replies hang below it. ``reply_count`` counts the direct
replies still shown in the thread, so a deleted comment whose last reply goes becomes a deleted
leaf itself and drops out of its parent's count in turn.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from tidings.accounts.models import User
from tidings.audit.service import AuditAction, record_audit
from tidings.auth.policy import Permission, Principal, refusal
from tidings.comments.models import Comment
from tidings.comments.repository import CommentRepository
from tidings.comments.schemas import (
    MAX_DEPTH,
    CommentCreate,
    CommentOut,
    CommentSort,
    CommentUpdate,
)
from tidings.core.db import utcnow
from tidings.core.errors import (
    BadRequest,
    FieldError,
    Forbidden,
    NotFound,
    PreconditionFailed,
    ValidationFailed,
)
from tidings.core.pagination import PageParams, paginate
from tidings.events import domain
from tidings.events.outbox import record
from tidings.graph.repository import GraphRepository
from tidings.posts import parsing
from tidings.posts.repository import PostRepository
from tidings.posts.schemas import AuthorOut
from tidings.posts.service import _subject, visible_post

NOT_FOUND = "No such comment."
PARENT_LOC: list[str | int] = ["body", "parent_comment_id"]


def render(comment: Comment, author: User | None) -> CommentOut:
    """The API body of a comment; a deleted one is a tombstone without text or author."""
    deleted = comment.deleted_at is not None
    return CommentOut(
        id=comment.id,
        post_id=comment.post_id,
        parent_comment_id=comment.parent_id,
        depth=comment.depth,
        author=None if deleted or author is None else AuthorOut.model_validate(author),
        text="" if deleted else comment.text,
        deleted=deleted,
        reply_count=comment.reply_count,
        version=comment.version,
        created_at=comment.created_at,
        edited_at=comment.edited_at,
    )


async def _can_see_author(
    session: AsyncSession, viewer: Principal | None, author: User, *, own_blocks_hide: bool = True
) -> bool:
    """Comments by suspended users, or by users blocked either way with the viewer (only by the
    author, without ``own_blocks_hide``), are hidden (except from their author and from
    moderators)."""
    if viewer is not None and (
        viewer.user_id == author.id or viewer.can(Permission.CONTENT_MODERATE)
    ):
        return True
    if author.suspended:
        return False
    if viewer is None:
        return True
    graph = GraphRepository(session)
    if not own_blocks_hide:
        return not (await graph.relationship(viewer.user_id, author.id)).blocked_by
    return not await graph.blocked_between(viewer.user_id, author.id)


async def visible_comment(
    session: AsyncSession,
    viewer: Principal | None,
    comment_id: int,
    *,
    for_update: bool = False,
    live: bool = False,
    own_blocks_hide: bool = True,
) -> tuple[Comment, User]:
    """The comment and its author; 404 when missing, when its post is invisible to the viewer,
    when its author is hidden from them, or when it is deleted (``live``) or a deleted leaf
    (``own_blocks_hide``: see :func:`tidings.posts.views.load_context`)."""
    comment = await CommentRepository(session).get(comment_id, for_update=for_update)
    if comment is None:
        raise NotFound(NOT_FOUND)
    try:
        await visible_post(session, viewer, comment.post_id, own_blocks_hide=own_blocks_hide)
    except NotFound:
        raise NotFound(NOT_FOUND) from None
    author = await session.get(User, comment.author_id)
    if author is None:  # pragma: no cover - the foreign key cascades
        raise NotFound(NOT_FOUND)
    if comment.deleted_at is not None:
        if live or comment.reply_count == 0:
            raise NotFound(NOT_FOUND)
        return comment, author
    if not await _can_see_author(session, viewer, author, own_blocks_hide=own_blocks_hide):
        raise NotFound(NOT_FOUND)
    return comment, author


async def _parent(
    session: AsyncSession, viewer: Principal, post_id: int, parent_id: int
) -> Comment:
    """The comment being replied to: on the same post, not deleted, visible, not too deep."""
    parent = await CommentRepository(session).get(parent_id, for_update=True)
    author = await session.get(User, parent.author_id) if parent is not None else None
    if (
        parent is None
        or author is None
        or parent.post_id != post_id
        or parent.deleted_at is not None
        or not await _can_see_author(session, viewer, author)
    ):
        raise ValidationFailed(
            "Replies must answer an existing comment on the same post.",
            errors=[FieldError(loc=PARENT_LOC, msg="not a comment on this post")],
        )
    if parent.depth + 1 > MAX_DEPTH:
        raise ValidationFailed(
            f"Replies nest at most {MAX_DEPTH} levels deep; answer a comment higher up.",
            errors=[FieldError(loc=PARENT_LOC, msg=f"replies nest at most {MAX_DEPTH} deep")],
        )
    return parent


async def _mentioned_ids(session: AsyncSession, author_id: int, text: str) -> list[int]:
    ids = await PostRepository(session).user_ids_by_usernames(parsing.mentions(text))
    blocked = await GraphRepository(session).blocked_any_way(author_id, ids)
    return [uid for uid in ids if uid not in blocked and uid != author_id]


async def create_comment(
    session: AsyncSession, viewer: Principal, post_id: int, cmd: CommentCreate
) -> CommentOut:
    post, _ = await _subject(session, viewer, post_id)  # a share's comments go to the original
    parent = None
    if cmd.parent_comment_id is not None:
        parent = await _parent(session, viewer, post.id, cmd.parent_comment_id)
    repo = CommentRepository(session)
    comment = await repo.add(
        Comment(
            post_id=post.id,
            author_id=viewer.user_id,
            parent_id=parent.id if parent else None,
            depth=parent.depth + 1 if parent else 0,
            text=cmd.text,
        )
    )
    await PostRepository(session).bump(post.id, comment_count=+1)
    if parent is not None:
        await repo.bump_replies(parent.id, +1)
    record(
        session,
        domain.CommentCreated(
            comment_id=comment.id,
            post_id=post.id,
            user_id=viewer.user_id,
            parent_comment_id=comment.parent_id,
            post_author_id=post.author_id,
            parent_author_id=parent.author_id if parent else None,
            mentioned_user_ids=tuple(await _mentioned_ids(session, viewer.user_id, cmd.text)),
        ),
    )
    await session.flush()
    return render(comment, await session.get(User, viewer.user_id))


async def get_comment(
    session: AsyncSession, viewer: Principal | None, comment_id: int
) -> CommentOut:
    return render(*await visible_comment(session, viewer, comment_id))


def _after(params: PageParams, sort: CommentSort) -> int | None:
    key = params.key("id")
    if key is None:
        return None
    if key.get("sort", "oldest") != sort:
        raise BadRequest("The cursor belongs to another sort order; start again without one.")
    after: int = key["id"]
    return after


async def list_comments(
    session: AsyncSession,
    viewer: Principal | None,
    post_id: int,
    sort: CommentSort,
    params: PageParams,
) -> tuple[list[CommentOut], str | None]:
    """Top-level comments of a post, oldest (or newest) first."""
    after = _after(params, sort)
    post, _ = await _subject(session, viewer, post_id)
    rows = await CommentRepository(session).top_level_page(
        post.id,
        params.limit,
        after,
        newest=sort == "newest",
        viewer_id=viewer.user_id if viewer else None,
    )
    page, cursor = paginate(rows, params.limit, lambda row: {"id": row[0].id, "sort": sort})
    return [render(comment, author) for comment, author in page], cursor


async def list_replies(
    session: AsyncSession,
    viewer: Principal | None,
    comment_id: int,
    sort: CommentSort,
    params: PageParams,
) -> tuple[list[CommentOut], str | None]:
    """Direct replies to a comment (also below a tombstone), oldest (or newest) first."""
    after = _after(params, sort)
    comment, _ = await visible_comment(session, viewer, comment_id)
    rows = await CommentRepository(session).replies_page(
        comment.id,
        params.limit,
        after,
        newest=sort == "newest",
        viewer_id=viewer.user_id if viewer else None,
    )
    page, cursor = paginate(rows, params.limit, lambda row: {"id": row[0].id, "sort": sort})
    return [render(reply, author) for reply, author in page], cursor


async def update_comment(
    session: AsyncSession,
    viewer: Principal,
    comment_id: int,
    cmd: CommentUpdate,
    expected_version: int | None,
) -> CommentOut:
    comment, author = await visible_comment(session, viewer, comment_id, for_update=True, live=True)
    if comment.author_id != viewer.user_id:
        raise Forbidden("Only the author can edit a comment.")
    if expected_version is not None and expected_version != comment.version:
        raise PreconditionFailed("The comment changed since you read it; fetch it and retry.")
    comment.text = cmd.text
    comment.version += 1
    comment.edited_at = utcnow()
    record(
        session,
        domain.CommentUpdated(
            comment_id=comment.id, post_id=comment.post_id, user_id=viewer.user_id
        ),
    )
    await session.flush()
    return render(comment, author)


async def delete_comment(session: AsyncSession, viewer: Principal, comment_id: int) -> None:
    comment, _ = await visible_comment(session, viewer, comment_id, for_update=True, live=True)
    if comment.author_id != viewer.user_id and not viewer.can(Permission.CONTENT_MODERATE):
        raise refusal(
            viewer,
            Permission.CONTENT_MODERATE,
            "Only the author or a moderator can delete a comment.",
        )
    await remove_comment(session, comment, actor_id=viewer.user_id)
    if comment.author_id != viewer.user_id:
        await record_audit(
            session,
            AuditAction.COMMENT_MODERATED,
            actor_id=viewer.user_id,
            target_type="comment",
            target_id=comment.id,
            author_id=comment.author_id,
        )


async def remove_comment(session: AsyncSession, comment: Comment, *, actor_id: int) -> None:
    """Delete a live comment (locked by the caller) with the counts that include it. No checks:
    the caller decided."""
    comment.deleted_at = utcnow()
    comment.version += 1
    await session.flush()
    await PostRepository(session).bump(comment.post_id, comment_count=-1)
    if comment.reply_count == 0:
        await _leave_thread(CommentRepository(session), comment.parent_id)
    record(
        session,
        domain.CommentDeleted(comment_id=comment.id, post_id=comment.post_id, user_id=actor_id),
    )


async def _leave_thread(repo: CommentRepository, parent_id: int | None) -> None:
    """A deleted leaf leaves the thread: its parent shows one reply fewer, and a deleted parent
    left without replies leaves in turn (at most ``MAX_DEPTH`` steps)."""
    while parent_id is not None:
        count, deleted, grandparent_id = await repo.bump_replies(parent_id, -1)
        if not deleted or count > 0:
            return
        parent_id = grandparent_id
