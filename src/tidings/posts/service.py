"""Post use cases: compose, read, edit, delete, like, share. Services never commit."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from tidings.accounts.models import User
from tidings.audit.service import AuditAction, record_audit
from tidings.auth.policy import Permission, Principal, refusal
from tidings.core.db import utcnow
from tidings.core.errors import (
    Conflict,
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
from tidings.posts.models import Post
from tidings.posts.repository import PostRepository
from tidings.posts.schemas import (
    BookmarkStateOut,
    LikeStateOut,
    PostCreate,
    PostOut,
    PostUpdate,
    ShareStateOut,
)
from tidings.posts.views import ViewContext, load_context, render, render_page

NOT_FOUND = "No such post."


async def visible_post(
    session: AsyncSession,
    viewer: Principal | None,
    post_id: int,
    *,
    for_update: bool = False,
    own_blocks_hide: bool = True,
) -> tuple[Post, ViewContext]:
    """The post and its view context; 404 when missing *or* invisible to the viewer (see
    :func:`load_context` for ``own_blocks_hide``)."""
    post = await PostRepository(session).get(post_id, for_update=for_update)
    if post is None:
        raise NotFound(NOT_FOUND)
    ctx = await load_context(session, viewer, [post], own_blocks_hide=own_blocks_hide)
    if not ctx.can_see(post):
        raise NotFound(NOT_FOUND)
    return post, ctx


async def _subject(
    session: AsyncSession, viewer: Principal | None, post_id: int
) -> tuple[Post, ViewContext]:
    """Likes and shares act on the original when given a share (loaded into the session: the
    context's copy may come from the row cache, which the session cannot refresh)."""
    post, ctx = await visible_post(session, viewer, post_id)
    if post.kind == "share" and post.share_of_id is not None:
        # one's own share is visible to oneself whatever it shares: the original must be too
        # (its author may have blocked the sharer since, or made it private, or been suspended)
        target = ctx.posts.get(post.share_of_id)
        if target is None or not ctx.can_see(target):
            raise NotFound(NOT_FOUND)
        original = await PostRepository(session).get(post.share_of_id)
        if original is None:
            raise NotFound(NOT_FOUND)
        return original, ctx
    return post, ctx


def _render(ctx: ViewContext, post: Post) -> PostOut:
    out = render(ctx, post)
    if out is None:  # pragma: no cover - callers check visibility first
        raise NotFound(NOT_FOUND)
    return out


async def _quote_target(session: AsyncSession, viewer: Principal, post_id: int) -> Post:
    try:
        target, _ = await _subject(session, viewer, post_id)
    except NotFound:
        target = None
    if target is None or target.visibility != "public":
        raise ValidationFailed(
            "Only existing public posts can be quoted.",
            errors=[FieldError(loc=["body", "quote_post_id"], msg="not a quotable post")],
        )
    return target


async def _mentioned_ids(session: AsyncSession, author_id: int, text: str) -> list[int]:
    ids = await PostRepository(session).user_ids_by_usernames(parsing.mentions(text))
    blocked = await GraphRepository(session).blocked_any_way(author_id, ids)
    return [uid for uid in ids if uid not in blocked and uid != author_id]


async def create_post(session: AsyncSession, viewer: Principal, cmd: PostCreate) -> PostOut:
    repo = PostRepository(session)
    quote = (
        await _quote_target(session, viewer, cmd.quote_post_id)
        if cmd.quote_post_id is not None
        else None
    )
    explicit = [str(url) for url in cmd.links or []]
    media = [m.model_dump(mode="json") for m in cmd.media or []]
    post = await repo.add(
        Post(
            author_id=viewer.user_id,
            kind="post",
            text=cmd.text,
            visibility=cmd.visibility,
            quote_of_id=quote.id if quote else None,
            media=media,
            has_media=bool(media),
            links=list(dict.fromkeys(explicit + parsing.links(cmd.text))),
        )
    )
    mentioned = await _mentioned_ids(session, viewer.user_id, cmd.text)
    await repo.set_tags(post.id, parsing.hashtags(cmd.text), new=True)
    await repo.set_mentions(post.id, mentioned, new=True)
    await repo.bump_user(viewer.user_id, post_count=+1)
    if quote is not None:
        await repo.bump(quote.id, quote_count=+1)
    record(
        session,
        domain.PostCreated(
            post_id=post.id,
            user_id=viewer.user_id,
            visibility=post.visibility,
            quote_of_id=post.quote_of_id,
            mentioned_user_ids=tuple(mentioned),
        ),
    )
    await session.flush()
    return _render(await load_context(session, viewer, [post]), post)


async def get_post(session: AsyncSession, viewer: Principal | None, post_id: int) -> PostOut:
    post, ctx = await visible_post(session, viewer, post_id)
    return _render(ctx, post)


async def update_post(
    session: AsyncSession,
    viewer: Principal,
    post_id: int,
    cmd: PostUpdate,
    expected_version: int | None,
) -> PostOut:
    post, _ = await visible_post(session, viewer, post_id, for_update=True)
    if post.author_id != viewer.user_id:
        raise Forbidden("Only the author can edit a post.")
    if post.kind == "share":
        raise Conflict("A share cannot be edited; delete it instead.")
    if expected_version is not None and expected_version != post.version:
        raise PreconditionFailed("The post changed since you read it; fetch it and retry.")
    repo = PostRepository(session)
    if cmd.text is not None and cmd.text != post.text:
        if not cmd.text and not post.media and post.quote_of_id is None:
            raise ValidationFailed(
                "A post needs text, media or a quoted post.",
                errors=[FieldError(loc=["body", "text"], msg="empty")],
            )
        explicit = [u for u in post.links or [] if u not in parsing.links(post.text)]
        post.links = list(dict.fromkeys(explicit + parsing.links(cmd.text)))
        post.text = cmd.text
        await repo.set_tags(post.id, parsing.hashtags(cmd.text))
        await repo.set_mentions(post.id, await _mentioned_ids(session, viewer.user_id, cmd.text))
    if cmd.visibility is not None:
        post.visibility = cmd.visibility
    post.version += 1
    post.edited_at = utcnow()
    record(
        session,
        domain.PostUpdated(post_id=post.id, user_id=viewer.user_id, visibility=post.visibility),
    )
    await session.flush()
    return _render(await load_context(session, viewer, [post]), post)


async def delete_post(session: AsyncSession, viewer: Principal, post_id: int) -> None:
    post, _ = await visible_post(session, viewer, post_id, for_update=True)
    is_author = post.author_id == viewer.user_id
    if not is_author and not viewer.can(Permission.CONTENT_MODERATE):
        raise refusal(
            viewer, Permission.CONTENT_MODERATE, "Only the author or a moderator can delete a post."
        )
    await remove_post(session, post, actor_id=viewer.user_id)
    if not is_author and post.kind != "share":
        await record_audit(
            session,
            AuditAction.POST_MODERATED,
            actor_id=viewer.user_id,
            target_type="post",
            target_id=post.id,
            author_id=post.author_id,
        )


async def remove_post(session: AsyncSession, post: Post, *, actor_id: int) -> None:
    """Delete a live post (locked by the caller), or undo a share, with everything that counts
    it, and the event that takes it out of feeds. No checks: the caller decided."""
    repo = PostRepository(session)
    if post.kind == "share" and post.share_of_id is not None:
        await repo.remove_share(post.author_id, post.share_of_id)
        record(
            session,
            domain.PostUnshared(post_id=post.share_of_id, user_id=post.author_id, share_id=post.id),
        )
        return
    post.deleted_at = utcnow()
    post.version += 1
    await repo.bump_user(post.author_id, post_count=-1)
    if post.quote_of_id is not None:
        await repo.bump(post.quote_of_id, quote_count=-1)
    await repo.delete_shares_of(post.id)
    record(
        session,
        domain.PostDeleted(
            post_id=post.id, user_id=actor_id, by_moderator=actor_id != post.author_id
        ),
    )


async def like(session: AsyncSession, viewer: Principal, post_id: int) -> LikeStateOut:
    post, _ = await _subject(session, viewer, post_id)
    likes = await PostRepository(session).add_like(post.id, viewer.user_id)
    if likes is None:  # liked before: the count as this transaction read the post
        return LikeStateOut(liked=True, likes=post.like_count)
    record(
        session,
        domain.PostLiked(post_id=post.id, user_id=viewer.user_id, post_author_id=post.author_id),
    )
    return LikeStateOut(liked=True, likes=likes)


async def unlike(session: AsyncSession, viewer: Principal, post_id: int) -> None:
    post, _ = await _subject(session, viewer, post_id)
    if await PostRepository(session).remove_like(post.id, viewer.user_id):
        record(session, domain.PostUnliked(post_id=post.id, user_id=viewer.user_id))


async def bookmark(session: AsyncSession, viewer: Principal, post_id: int) -> BookmarkStateOut:
    """Save a post the viewer may see (a share: the post it shares), for the viewer alone;
    idempotent."""
    post, _ = await _subject(session, viewer, post_id)
    await PostRepository(session).add_bookmark(viewer.user_id, post.id)
    return BookmarkStateOut(bookmarked=True)


async def unbookmark(session: AsyncSession, viewer: Principal, post_id: int) -> None:
    """Remove a bookmark, also of a post the viewer no longer sees (deleted since, or its author
    blocked): a list entry can always be removed. Without a bookmark, a post the viewer may not
    see is a 404 like a missing one."""
    repo = PostRepository(session)
    if await repo.remove_bookmark(viewer.user_id, post_id):
        return
    post, _ = await _subject(session, viewer, post_id)  # 404, or the original of a share
    await repo.remove_bookmark(viewer.user_id, post.id)


async def bookmarks(
    session: AsyncSession, viewer: Principal, params: PageParams
) -> tuple[list[dict[str, Any]], str | None]:
    """The viewer's bookmarks, newest first, as post bodies; a post the viewer may no longer see
    (deleted, made private, its author suspended or blocked either way) is left out, so a page
    may hold fewer than ``limit``."""
    key = params.key("id")
    rows = await PostRepository(session).bookmarks_page(
        viewer.user_id, params.limit, key["id"] if key else None
    )
    page, cursor = paginate(rows, params.limit, lambda row: {"id": row[0]})
    return await render_page(session, viewer, [post for _, post in page]), cursor


async def likers(
    session: AsyncSession, viewer: Principal | None, post_id: int, params: PageParams
) -> tuple[list[User], str | None]:
    post, _ = await _subject(session, viewer, post_id)
    key = params.key("id")
    rows = await PostRepository(session).likers_page(
        post.id, params.limit, key["id"] if key else None, viewer.user_id if viewer else None
    )
    page, cursor = paginate(rows, params.limit, lambda row: {"id": row[0]})
    return [user for _, user in page], cursor


async def share(
    session: AsyncSession, viewer: Principal, post_id: int
) -> tuple[ShareStateOut, bool]:
    """Share once; repeating is idempotent. Returns (state, created)."""
    post, _ = await _subject(session, viewer, post_id)
    if post.visibility != "public":
        raise Conflict("Only public posts can be shared.")
    repo = PostRepository(session)
    created = await repo.add_share(viewer.user_id, post.id, post.has_media)
    existing = await repo.share_of(viewer.user_id, post.id)
    assert existing is not None
    if created:
        record(
            session,
            domain.PostShared(
                post_id=post.id,
                user_id=viewer.user_id,
                share_id=existing.id,
                post_author_id=post.author_id,
            ),
        )
    await session.refresh(post, ["share_count"])
    return ShareStateOut(shared=True, shares=post.share_count, share_id=existing.id), created


async def unshare(session: AsyncSession, viewer: Principal, post_id: int) -> None:
    post, _ = await _subject(session, viewer, post_id)
    share_id = await PostRepository(session).remove_share(viewer.user_id, post.id)
    if share_id is not None:
        record(
            session, domain.PostUnshared(post_id=post.id, user_id=viewer.user_id, share_id=share_id)
        )
