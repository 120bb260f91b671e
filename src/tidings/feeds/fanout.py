"""The fan-out consumer: new posts and shares into the timelines of active followers.

Authors with more followers than ``TIDINGS_FANOUT_THRESHOLD`` are not fanned out: their posts
go to their own recent list, merged at read time by the people who follow them. Only timelines
that exist are written (a timeline expires ``TIDINGS_FEED_INACTIVE_DAYS`` after its owner's last
feed read), so followers who are not around cost one ``EXISTS`` each and nothing else.

Unfollows, blocks, mutes, deletions and visibility downgrades need nothing here: the read path
filters every candidate with the pull query's own conditions. A follow merges the followee's
recent posts; a visibility upgrade (private → public) fans the post out like a new one; a
erased account's own timeline and recent-posts list are dropped (once its follows are gone, so
no follower's read builds the list again).

The consumer is registered always and does nothing without a feed store (``TIDINGS_FEED_STORE
=none``, the embedded default). While Redis (or the database) cannot be reached, the event is
deferred (:class:`~tidings.events.consumers.RetryLater`): the relay publishes it again later,
so timelines get the post once Redis is back, without a dead letter to replay. Other Redis
errors propagate: the event is retried and, when the attempts run out, dead-lettered.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from tidings.core.outage import UNREACHABLE
from tidings.events.consumers import ConsumerRegistry, Envelope, RetryLater
from tidings.feeds.repository import FeedRepository
from tidings.feeds.store import FeedStore, store_of
from tidings.posts.models import Post
from tidings.timelines.repository import FOLLOWER_VISIBILITIES

CONSUMER = "feeds"


async def fan_out(store: FeedStore, session: AsyncSession, post_id: int, author_id: int) -> int:
    """Write the post to its author's timeline and their followers' (or to the author's list);
    returns the number of timeline entries written."""
    post = await session.get(Post, post_id)
    if post is None or post.deleted_at is not None or post.author_id != author_id:
        return 0
    written = await store.add_to_timelines([author_id], [post_id])
    if post.visibility not in FOLLOWER_VISIBILITIES:
        return written
    repo = FeedRepository(session)
    if await repo.follower_count(author_id) > store.threshold:
        if await store.author_list_exists(author_id):
            await store.add_to_author(author_id, [post_id])
        else:
            await store.store_author(author_id, await repo.author_ids(author_id, store.cap))
        return written + 1
    # Bounded: at most threshold / batch rounds. Each batch's Redis write runs while the next
    # batch is read from PostgreSQL (the two wait on different servers).
    batch = await repo.followers_after(author_id, 0, store.batch)
    while batch:
        write = store.add_to_timelines([u for _, u in batch], [post_id])
        if len(batch) < store.batch:
            return written + await write
        async with asyncio.TaskGroup() as group:  # one failing cancels the other
            writing = group.create_task(write)
            reading = group.create_task(repo.followers_after(author_id, batch[-1][0], store.batch))
        written += writing.result()
        batch = reading.result()
    return written


async def merge_followee(
    store: FeedStore, session: AsyncSession, follower_id: int, followee_id: int
) -> None:
    """A new follow: the followee's recent posts join the follower's timeline (down to its
    lowest entry; older ones are the pull query's). Authors over the threshold need nothing:
    every read merges their list."""
    repo = FeedRepository(session)
    if await repo.follower_count(followee_id) > store.threshold:
        return  # their list is merged at read time
    complete, lowest = await store.lowest(follower_id)
    if not complete:
        return  # no timeline: the next read rebuilds it, follow included
    ids = await repo.author_ids(followee_id, store.cap, since=lowest)
    await store.add_to_timelines([follower_id], ids)


def _id(env: Envelope, name: str) -> int:
    return env.int_field(name) or 0


async def _created(store: FeedStore, session: AsyncSession, env: Envelope) -> None:
    await fan_out(store, session, _id(env, "post_id"), _id(env, "user_id"))


async def _updated(store: FeedStore, session: AsyncSession, env: Envelope) -> None:
    if env.payload.get("visibility") in FOLLOWER_VISIBILITIES:
        await fan_out(store, session, _id(env, "post_id"), _id(env, "user_id"))


async def _shared(store: FeedStore, session: AsyncSession, env: Envelope) -> None:
    await fan_out(store, session, _id(env, "share_id"), _id(env, "user_id"))


async def _followed(store: FeedStore, session: AsyncSession, env: Envelope) -> None:
    await merge_followee(store, session, _id(env, "user_id"), _id(env, "target_user_id"))


async def _user_erased(store: FeedStore, _session: AsyncSession, env: Envelope) -> None:
    await store.forget_user(_id(env, "user_id"))


HANDLERS: dict[str, Callable[[FeedStore, AsyncSession, Envelope], Awaitable[None]]] = {
    "post.created": _created,
    "post.updated": _updated,
    "post.shared": _shared,
    "user.followed": _followed,
    "user.erased": _user_erased,
}


async def handle(session: AsyncSession, env: Envelope, _context: Any) -> None:
    store = store_of(session)
    if store is None:
        return
    if not store.outage.shared_available:  # just found unreachable: do not wait on it again
        raise RetryLater("Redis is unreachable")
    try:
        await HANDLERS[env.event_type](store, session, env)
    except Exception as exc:
        if _unreachable(exc):
            # the events after this one defer at once, for the pause's few seconds
            store.failed(exc.exceptions[0] if isinstance(exc, BaseExceptionGroup) else exc)
            raise RetryLater(f"{type(exc).__name__}: {exc}") from exc
        raise


def _unreachable(exc: BaseException) -> bool:
    """A connection error or a timeout, alone or as every error of a task group's."""
    if isinstance(exc, BaseExceptionGroup):
        return all(_unreachable(inner) for inner in exc.exceptions)
    return isinstance(exc, UNREACHABLE)


def register(registry: ConsumerRegistry) -> None:
    registry.add(CONSUMER, HANDLERS, handle)
