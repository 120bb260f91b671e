"""The notifications consumer: turns domain events into notices for the people concerned.

``deliver`` runs the handler once per event inside a unit of work that already recorded the
event as processed, so the handler only writes; redelivered events never reach it twice.
Who is notified is decided here, at consume time, against the graph as it is now. A block
removes each of the two from the other's existing notifications.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from tidings.events import domain
from tidings.events.consumers import ConsumerRegistry, Envelope
from tidings.graph.repository import GraphRepository
from tidings.notifications.repository import NotificationRepository
from tidings.notifications.schemas import Kind
from tidings.notifications.service import Notice, forget_pair, notify, notify_moderators
from tidings.posts.models import Post

CONSUMER = "notifications"
Builder = Callable[[AsyncSession, Envelope], Awaitable[list[Notice]]]


def _id(env: Envelope, name: str) -> int:
    value = env.int_field(name)
    return value or 0


def _ids(env: Envelope, name: str) -> list[int]:
    return [int(v) for v in env.payload.get(name) or [] if v not in (None, "")]


async def _can_see(session: AsyncSession, post: Post | None, viewers: Iterable[int]) -> set[int]:
    """Which ``viewers`` may see ``post`` (mentions must not reveal posts you cannot read)."""
    wanted = set(viewers)
    if post is None or post.deleted_at is not None:
        return set()
    if post.visibility == "public":
        return wanted
    allowed = {post.author_id} & wanted
    if post.visibility == "followers":
        allowed |= await NotificationRepository(session).following(post.author_id, wanted)
    return allowed


async def _liked(session: AsyncSession, env: Envelope) -> list[Notice]:
    post_id = _id(env, "post_id")
    return [Notice(_id(env, "post_author_id"), Kind.LIKE, f"like:{post_id}", post_id=post_id)]


async def _shared(session: AsyncSession, env: Envelope) -> list[Notice]:
    post_id = _id(env, "post_id")
    return [Notice(_id(env, "post_author_id"), Kind.SHARE, f"share:{post_id}", post_id=post_id)]


async def _followed(session: AsyncSession, env: Envelope) -> list[Notice]:
    return [Notice(_id(env, "target_user_id"), Kind.FOLLOW, "follow")]


async def _follow_requested(session: AsyncSession, env: Envelope) -> list[Notice]:
    """Only while the request still waits (withdrawn or answered before the event is
    consumed: nothing to tell)."""
    requester, target = _id(env, "user_id"), _id(env, "target_user_id")
    if not await NotificationRepository(session).request_waiting(requester, target):
        return []
    kind = Kind.FOLLOW_REQUEST
    return [Notice(target, kind, kind.value)]


async def _post_created(session: AsyncSession, env: Envelope) -> list[Notice]:
    """The quoted post's author gets ``quote``; people mentioned get ``mention`` — as far as
    they may see the new post."""
    post_id = _id(env, "post_id")
    post = await session.get(Post, post_id)
    notices: list[Notice] = []
    quote_of_id = env.int_field("quote_of_id")
    quoted = await session.get(Post, quote_of_id) if quote_of_id else None
    if quoted is not None:
        notices.append(Notice(quoted.author_id, Kind.QUOTE, f"quote:{post_id}", post_id=post_id))
    key = f"mention:post:{post_id}"
    notices += [
        Notice(uid, Kind.MENTION, key, post_id=post_id) for uid in _ids(env, "mentioned_user_ids")
    ]
    allowed = await _can_see(session, post, (n.recipient_id for n in notices))
    return [n for n in notices if n.recipient_id in allowed]


async def _comment_created(session: AsyncSession, env: Envelope) -> list[Notice]:
    """The parent comment's author gets ``reply``, the post's author ``comment``, people
    mentioned ``mention`` (if they may see the post) — one each, in that order of precedence."""
    post_id, comment_id = _id(env, "post_id"), _id(env, "comment_id")
    subject = {"post_id": post_id, "comment_id": comment_id}
    notices: list[Notice] = []
    parent_author = env.int_field("parent_author_id")
    if parent_author:
        notices.append(Notice(parent_author, Kind.REPLY, f"reply:{comment_id}", **subject))
    notices.append(
        Notice(_id(env, "post_author_id"), Kind.COMMENT, f"comment:{comment_id}", **subject)
    )
    mentioned = _ids(env, "mentioned_user_ids")
    if mentioned:
        allowed = await _can_see(session, await session.get(Post, post_id), mentioned)
        key = f"mention:comment:{comment_id}"
        notices += [
            Notice(uid, Kind.MENTION, key, **subject) for uid in mentioned if uid in allowed
        ]
    return notices


BUILDERS: dict[str, Builder] = {
    domain.PostLiked.event_type: _liked,
    domain.PostShared.event_type: _shared,
    domain.UserFollowed.event_type: _followed,
    domain.FollowRequested.event_type: _follow_requested,
    domain.PostCreated.event_type: _post_created,
    domain.CommentCreated.event_type: _comment_created,
}


# events that change existing notifications rather than add any
FORGET = domain.UserBlocked.event_type
# events for the moderators, whoever they are: not shaped by the reporter's graph
REPORTED = domain.ReportCreated.event_type


async def _still_blocked(session: AsyncSession, user_id: int, other_id: int) -> bool:
    return bool(await GraphRepository(session).blocked_any_way(user_id, [other_id]))


async def handle(session: AsyncSession, env: Envelope, context: Any) -> None:
    actor_id = env.int_field("user_id")
    if env.event_type == FORGET:
        target_id = env.int_field("target_user_id")
        # only while the block stands: a late event (backlog, replayed dead letter) after an
        # unblock must not remove what arrived since
        if actor_id and target_id and await _still_blocked(session, actor_id, target_id):
            await forget_pair(session, actor_id, target_id)
        return
    if env.event_type == domain.UserFollowed.event_type and env.payload.get("approved"):
        # the locked account approved: the requester hears it from that account
        target_id, requester_id = env.int_field("target_user_id"), actor_id
        if target_id and requester_id:
            kind = Kind.FOLLOW_ACCEPTED
            await notify(session, target_id, [Notice(requester_id, kind, kind.value)])
        return
    if env.event_type == REPORTED:
        report_id = env.int_field("report_id")
        if report_id:
            required = getattr(getattr(context, "settings", None), "staff_mfa", "required")
            await notify_moderators(session, report_id, second_factor=required == "required")
        return
    builder = BUILDERS.get(env.event_type)
    if actor_id is None or builder is None:
        return
    await notify(session, actor_id, await builder(session, env))


def register(registry: ConsumerRegistry) -> None:
    registry.add(CONSUMER, [*BUILDERS, FORGET, REPORTED], handle)
