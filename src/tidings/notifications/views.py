"""Turning notification groups into API bodies: actors the reader may see, and a summary."""

from __future__ import annotations

from tidings.accounts.models import User
from tidings.notifications.models import NotificationGroup
from tidings.notifications.schemas import ActorOut, Kind, NotificationOut

PHRASES: dict[Kind, str] = {
    Kind.LIKE: "liked your post",
    Kind.SHARE: "shared your post",
    Kind.COMMENT: "commented on your post",
    Kind.REPLY: "replied to your comment",
    Kind.FOLLOW: "followed you",
    Kind.FOLLOW_REQUEST: "asked to follow you",
    Kind.FOLLOW_ACCEPTED: "accepted your follow request",
    Kind.QUOTE: "quoted your post",
}


# kinds that name nobody: rendered whoever is hidden from the reader
ANONYMOUS = frozenset({Kind.SYSTEM, Kind.REPORT})


def _name(user: User) -> str:
    return user.display_name or user.username


def who(actors: list[User], count: int) -> str:
    """ "alice", "alice and bob", "alice and 12 others" — or "3 people" when none is shown."""
    if not actors:
        return "Someone" if count <= 1 else f"{count} people"
    first = _name(actors[0])
    others = count - 1
    if others <= 0:
        return first
    if others == 1:
        return f"{first} and {_name(actors[1])}" if len(actors) > 1 else f"{first} and 1 other"
    return f"{first} and {others} others"


def summary(group: NotificationGroup, actors: list[User]) -> str:
    kind = Kind(group.kind)
    if kind is Kind.SYSTEM:
        return group.title or "Notice"
    if kind is Kind.REPORT:  # counts reports, not people: whoever filed them is in the queue
        n = group.actor_count
        return f"{n} new report{'' if n == 1 else 's'} to review"
    if kind is Kind.MENTION:
        where = "a comment" if group.comment_id is not None else "a post"
        return f"{who(actors, group.actor_count)} mentioned you in {where}"
    return f"{who(actors, group.actor_count)} {PHRASES[kind]}"


def render(group: NotificationGroup, visible: dict[int, User]) -> NotificationOut | None:
    """The body of one group; None when every actor in it is now hidden from the reader
    (blocked either way, or suspended)."""
    latest = list(group.latest_actor_ids or [])
    actors = [visible[a] for a in latest if a in visible]
    if group.kind not in ANONYMOUS and not actors and group.actor_count <= len(latest):
        return None
    return NotificationOut(
        id=group.id,
        kind=Kind(group.kind),
        actors=[ActorOut.model_validate(a) for a in actors],
        actor_count=group.actor_count,
        post_id=group.post_id,
        comment_id=group.comment_id,
        summary=summary(group, actors),
        title=group.title,
        body=group.body,
        data=group.data,
        read=group.read_at is not None,
        created_at=group.created_at,
        updated_at=group.last_event_at,
    )
