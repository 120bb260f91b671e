"""Follow, block and mute use cases."""

from __future__ import annotations

from datetime import datetime
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from tidings.accounts.models import User
from tidings.accounts.repository import UserRef, UserRepository
from tidings.auth.policy import Permission, Principal
from tidings.core.cache import cache_of
from tidings.core.errors import Conflict, NotFound, ValidationFailed
from tidings.core.pagination import PageParams, paginate
from tidings.events import domain
from tidings.events.outbox import record
from tidings.graph.repository import GraphRepository, OwnKind, Relationship, Standing
from tidings.graph.schemas import OwnRelationOut
from tidings.posts.relations import relations_of


async def visible_user(session: AsyncSession, username: str, viewer: Principal | None) -> User:
    """The user named ``username`` as the viewer may see them: suspended accounts and accounts
    that block the viewer answer 404, exactly like accounts that do not exist."""
    user = await UserRepository(session).by_username(username)
    return (await _visible(session, username, viewer, user))[0]


async def visible_user_and_relationship(
    session: AsyncSession, username: str, viewer: Principal | None
) -> tuple[UserRef, Standing | None]:
    """:func:`visible_user`'s decision for a read-only page (the user's id and suspension, read
    on the driver), and the viewer's standing with them when it was needed to decide (a
    signed-in viewer other than the user, not a moderator). With a row cache the standing
    comes from the viewer's cached relations (:mod:`tidings.posts.relations`)."""
    ref = await UserRepository(session).ref_by_username(username)
    return await _visible(session, username, viewer, ref, page=True)


U = TypeVar("U", User, UserRef)


async def _visible(
    session: AsyncSession,
    username: str,
    viewer: Principal | None,
    user: U | None,
    *,
    page: bool = False,
) -> tuple[U, Standing | None]:
    missing = NotFound(f"No user named '{username}'.")
    if user is None or user.deleted_at is not None:  # deleted: gone for moderators too
        raise missing
    moderator = viewer is not None and viewer.can(Permission.CONTENT_MODERATE)
    if user.suspended and not moderator:
        raise missing
    if viewer is not None and viewer.user_id != user.id and not moderator:
        rel: Standing
        if page and cache_of(session) is not None:
            rel = await _cached_standing(session, viewer.user_id, user.id)
        else:
            rel = await GraphRepository(session).relationship(viewer.user_id, user.id)
        if rel.blocked_by:
            raise missing
        return user, rel
    return user, None


async def _cached_standing(session: AsyncSession, viewer_id: int, user_id: int) -> Standing:
    """The standing from the viewer's cached relations (which hold nothing of ``followed_by``)."""
    found = await relations_of(session, viewer_id, [user_id], ())
    return Standing(
        following=user_id in found.following,
        blocking=user_id in found.blocking,
        blocked_by=user_id in found.blocked_by,
        muting=user_id in found.muted,
    )


def _not_self(viewer: Principal, target: User, action: str) -> None:
    if viewer.user_id == target.id:
        raise ValidationFailed(f"You cannot {action} yourself.")


async def relationship(session: AsyncSession, viewer: Principal, target: User) -> Relationship:
    return await GraphRepository(session).relationship(viewer.user_id, target.id)


async def follow(session: AsyncSession, viewer: Principal, username: str) -> Relationship:
    """Follow; a locked account gets a follow request instead (``requested`` in the answer),
    which it approves or declines. Idempotent either way."""
    target = await visible_user(session, username, viewer)
    _not_self(viewer, target, "follow")
    graph = GraphRepository(session)
    await graph.lock_pair(viewer.user_id, target.id)
    rel = await graph.relationship(viewer.user_id, target.id)
    if rel.blocking or rel.blocked_by:
        raise Conflict("You block this user; unblock them before following.")
    if rel.following:
        return rel
    # read again under the pair lock, locked against a change of it (PATCH /me's update of the
    # row waits for this transaction, or this read for it): a lock switched on meanwhile holds
    if await graph.locked_for_follow(target.id):
        if await graph.add_request(viewer.user_id, target.id):
            record(
                session, domain.FollowRequested(user_id=viewer.user_id, target_user_id=target.id)
            )
    else:
        await graph.remove_request(viewer.user_id, target.id)  # one from while it was locked
        if await graph.add_follow(viewer.user_id, target.id):
            record(session, domain.UserFollowed(user_id=viewer.user_id, target_user_id=target.id))
    return await graph.relationship(viewer.user_id, target.id)


async def unfollow(session: AsyncSession, viewer: Principal, username: str) -> None:
    """Unfollow, or withdraw a follow request still waiting."""
    target = await visible_user(session, username, viewer)
    _not_self(viewer, target, "unfollow")
    graph = GraphRepository(session)
    await graph.remove_request(viewer.user_id, target.id)
    if await graph.remove_follow(viewer.user_id, target.id):
        record(session, domain.UserUnfollowed(user_id=viewer.user_id, target_user_id=target.id))


async def _requester(session: AsyncSession, viewer: Principal, username: str) -> User:
    """The account whose follow request the viewer answers, suspended or not (a request from
    an account suspended since can still be declined); a deleted or missing one is a 404."""
    requester = await UserRepository(session).by_username(username)
    if requester is None or requester.deleted_at is not None:
        raise NotFound(f"No user named '{username}'.")
    _not_self(viewer, requester, "answer a follow request of")
    return requester


async def approve_request(session: AsyncSession, viewer: Principal, username: str) -> Relationship:
    """The requester follows the viewer from now on (``user.followed``, as any follow, marked
    ``approved``). Approving again once they follow answers the same (a retry); a suspended
    requester's request waits (404 as if none: nobody may approve it meanwhile)."""
    requester = await _requester(session, viewer, username)
    graph = GraphRepository(session)
    await graph.lock_pair(viewer.user_id, requester.id)
    waiting = NotFound(f"No follow request from '{username}' is waiting.")
    if requester.suspended:
        raise waiting
    if not await graph.remove_request(requester.id, viewer.user_id):
        rel = await graph.relationship(viewer.user_id, requester.id)
        if rel.followed_by:
            return rel  # approved before: the answer a retry expects
        raise waiting
    rel = await graph.relationship(viewer.user_id, requester.id)
    if rel.blocking or rel.blocked_by:  # a block removes requests; kept as a guard
        raise Conflict("You and this user block each other; the request is void.")
    if await graph.add_follow(requester.id, viewer.user_id):
        record(
            session,
            domain.UserFollowed(user_id=requester.id, target_user_id=viewer.user_id, approved=True),
        )
    return await graph.relationship(viewer.user_id, requester.id)


async def decline_request(session: AsyncSession, viewer: Principal, username: str) -> None:
    """Remove a waiting follow request (idempotent: none waiting is fine)."""
    requester = await _requester(session, viewer, username)
    await GraphRepository(session).remove_request(requester.id, viewer.user_id)


async def follow_requests(
    session: AsyncSession, viewer: Principal, params: PageParams
) -> tuple[list[tuple[User, datetime]], str | None]:
    """The follow requests waiting for the viewer's answer, newest first."""
    key = params.key("id")
    rows = await GraphRepository(session).page_requests(
        viewer.user_id, params.limit, key["id"] if key else None
    )
    page, cursor = paginate(rows, params.limit, lambda row: {"id": row[0]})
    return [(user, at) for _, user, at in page], cursor


async def block(session: AsyncSession, viewer: Principal, username: str) -> Relationship:
    target = await visible_user(session, username, viewer)
    _not_self(viewer, target, "block")
    graph = GraphRepository(session)
    await graph.lock_pair(viewer.user_id, target.id)
    if await graph.add_block(viewer.user_id, target.id):
        await graph.remove_follow(viewer.user_id, target.id)
        await graph.remove_follow(target.id, viewer.user_id)
        await graph.remove_request(viewer.user_id, target.id)
        await graph.remove_request(target.id, viewer.user_id)
        record(session, domain.UserBlocked(user_id=viewer.user_id, target_user_id=target.id))
    return await graph.relationship(viewer.user_id, target.id)


async def _own_edge_target(
    session: AsyncSession, viewer: Principal, username: str, kind: OwnKind
) -> User:
    """The user to unblock or unmute: one the viewer blocks or mutes is found even when they
    would answer 404 otherwise (suspended since, or blocking the viewer in turn), so a list's
    every entry can be removed. The holder of an entry can so tell a suspended account from a
    deleted one (which leaves the list); anyone else gets :func:`visible_user`'s answers, from
    the same one statement."""
    graph = GraphRepository(session)
    user, mine = await graph.user_and_own_edge(username, viewer.user_id, kind)
    if user is not None and user.deleted_at is None and mine:
        return user
    return (await _visible(session, username, viewer, user))[0]


async def unblock(session: AsyncSession, viewer: Principal, username: str) -> None:
    target = await _own_edge_target(session, viewer, username, "blocks")
    _not_self(viewer, target, "unblock")
    if await GraphRepository(session).remove_block(viewer.user_id, target.id):
        record(session, domain.UserUnblocked(user_id=viewer.user_id, target_user_id=target.id))


async def mute(session: AsyncSession, viewer: Principal, username: str) -> Relationship:
    target = await visible_user(session, username, viewer)
    _not_self(viewer, target, "mute")
    graph = GraphRepository(session)
    if await graph.add_mute(viewer.user_id, target.id):
        record(session, domain.UserMuted(user_id=viewer.user_id, target_user_id=target.id))
    return await graph.relationship(viewer.user_id, target.id)


async def unmute(session: AsyncSession, viewer: Principal, username: str) -> None:
    target = await _own_edge_target(session, viewer, username, "mutes")
    _not_self(viewer, target, "unmute")
    if await GraphRepository(session).remove_mute(viewer.user_id, target.id):
        record(session, domain.UserUnmuted(user_id=viewer.user_id, target_user_id=target.id))


async def connections(
    session: AsyncSession,
    viewer: Principal | None,
    username: str,
    params: PageParams,
    direction: str,
) -> tuple[list[User], str | None]:
    """Followers or following of a user, newest first, minus people blocked with the viewer."""
    target = await visible_user(session, username, viewer)
    graph = GraphRepository(session)
    key = params.key("id")
    before = key["id"] if key else None
    fetch = graph.page_followers if direction == "followers" else graph.page_following
    rows = await fetch(target.id, params.limit, before, viewer.user_id if viewer else None)
    page, cursor = paginate(rows, params.limit, lambda row: {"id": row[0]})
    return [user for _, user in page], cursor


async def own_relations(
    session: AsyncSession, viewer: Principal, params: PageParams, kind: OwnKind
) -> tuple[list[OwnRelationOut], str | None]:
    """The accounts the viewer blocks or mutes (``kind``), newest first."""
    key = params.key("id")
    rows = await GraphRepository(session).page_own(
        kind, viewer.user_id, params.limit, key["id"] if key else None
    )
    page, cursor = paginate(rows, params.limit, lambda row: {"id": row[0]})
    return [OwnRelationOut(id=uid, username=name, since=at) for _, uid, name, at in page], cursor
