"""Queries on follows, blocks and mutes, and the counters they keep on users."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any, Literal

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Integer,
    Select,
    and_,
    bindparam,
    delete,
    literal,
    or_,
    select,
    text,
    true,
    union_all,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from tidings.accounts.models import User
from tidings.core import rawsql
from tidings.core.db import insert_ignore
from tidings.graph.models import Block, Follow, FollowRequest, Mute
from tidings.posts.facts import relations_changed

OwnKind = Literal["blocks", "mutes"]


@dataclass(frozen=True)
class Standing:
    """The viewer's side of a relationship with another user: whom they follow, block and
    mute, and whether the other blocks them (what deciding a page needs)."""

    following: bool = False
    blocking: bool = False
    blocked_by: bool = False
    muting: bool = False


@dataclass(frozen=True)
class Relationship(Standing):
    """:class:`Standing`, whether the other follows the viewer, and whether the viewer's
    follow request to them is pending (they are locked)."""

    followed_by: bool = False
    requested: bool = False


FOLLOWING, FOLLOWED_BY, BLOCKING, BLOCKED_BY, MUTING, REQUESTED = range(1, 7)
PAIR_LOCK_TIMEOUT_MS = 5_000  # a follow or block waits at most this long for its pair's lock


@cache
def _relationship() -> Select[Any]:
    """``(relation,)`` rows between ``viewer_id`` and ``other_id``, built once."""
    viewer = bindparam("viewer_id", type_=BigInteger)
    other = bindparam("other_id", type_=BigInteger)

    def edge(relation: int, table: Any, source: Any, target: Any, a: Any, b: Any) -> Any:
        tag = literal(relation, Integer).label("relation")
        return select(tag).select_from(table).where(source == a, target == b)

    return union_all(
        edge(FOLLOWING, Follow, Follow.follower_id, Follow.followee_id, viewer, other),
        edge(FOLLOWED_BY, Follow, Follow.follower_id, Follow.followee_id, other, viewer),
        edge(BLOCKING, Block, Block.blocker_id, Block.blocked_id, viewer, other),
        edge(BLOCKED_BY, Block, Block.blocker_id, Block.blocked_id, other, viewer),
        edge(MUTING, Mute, Mute.muter_id, Mute.muted_id, viewer, other),
        edge(
            REQUESTED,
            FollowRequest,
            FollowRequest.requester_id,
            FollowRequest.target_id,
            viewer,
            other,
        ),
    )  # type: ignore[return-value]


PAIR_KEY_SPACE = 0x4000_0000_0000_0000  # bit 62: no pair key is a small fixed key


def _pair_key(a: int, b: int) -> int:
    """The advisory-lock key of a pair of users. Bit 62 is always set, so a pair can never
    take the lock of the audit chain or of migrations (small constants, bit 62 clear)."""
    low, high = sorted((a, b))
    return (((low * 1_000_003) ^ high) & 0x3FFF_FFFF_FFFF_FFFF) | PAIR_KEY_SPACE


def unblocked_with(viewer_id: int | None, user: Any) -> ColumnElement[bool]:
    """``user`` (a user-id column) is not blocked either way with the viewer: two correlated
    ``NOT EXISTS`` on ``blocks``' unique index. Lists used to send every block of the viewer
    as a ``NOT IN`` list: tens of thousands of blocks passed the drivers' parameter limits."""
    if viewer_id is None:
        return true()
    b = aliased(Block)  # correlated to the outer query only, even one that reads blocks too
    blocking = select(b.id).where(b.blocker_id == viewer_id, b.blocked_id == user)
    blocked_by = select(b.id).where(b.blocker_id == user, b.blocked_id == viewer_id)
    return and_(~blocking.correlate_except(b).exists(), ~blocked_by.correlate_except(b).exists())


class GraphRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def relationship(self, viewer_id: int, other_id: int) -> Relationship:
        """Follows, blocks (either way), the mute and a pending follow request between two
        users: one statement."""
        params = {"viewer_id": viewer_id, "other_id": other_id}
        found = {int(row[0]) for row in await rawsql.fetch(self.session, _relationship(), params)}
        return Relationship(
            following=FOLLOWING in found,
            followed_by=FOLLOWED_BY in found,
            blocking=BLOCKING in found,
            blocked_by=BLOCKED_BY in found,
            muting=MUTING in found,
            requested=REQUESTED in found,
        )

    async def lock_pair(self, a: int, b: int) -> None:
        """Serialise graph changes between two users for the rest of the transaction, so a
        follow and a block of the same pair cannot interleave (PostgreSQL advisory lock;
        SQLite serialises writers anyway). The request waits at most
        :data:`PAIR_LOCK_TIMEOUT_MS` for it, and for every lock after it in its transaction
        (a notification consumer holds the pair's lock until it commits, which can wait on
        the relay): past that it fails as a concurrent update (409 with Retry-After)."""
        if self.session.get_bind().dialect.name != "postgresql":
            return
        await self.session.execute(
            text("SELECT set_config('lock_timeout', :ms, true)"),
            {"ms": str(PAIR_LOCK_TIMEOUT_MS)},
        )
        await self.lock_pairs(a, [b])

    async def lock_pairs(self, a: int, others: Iterable[int]) -> None:
        """:meth:`lock_pair` for ``a`` and each of ``others``, in one order for every caller
        (so two callers cannot deadlock on them). A notification takes them before it checks
        blocks: a block of the same pair then commits either before the check, which sees it,
        or after the notification, which the block's consumer then removes."""
        if self.session.get_bind().dialect.name != "postgresql":
            return
        keys = sorted({_pair_key(a, b) for b in others})
        if len(keys) == 1:
            await self.session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": keys[0]})
        elif keys:  # one round trip, locked in the sorted keys' order (volatile functions in
            # a select list run after its ORDER BY)
            await self.session.execute(
                text(
                    "SELECT count(*) FROM (SELECT pg_advisory_xact_lock(t.k) "
                    "FROM unnest(CAST(:keys AS bigint[])) WITH ORDINALITY AS t(k, n) "
                    "ORDER BY t.n) AS locked"
                ),
                {"keys": keys},
            )

    async def blocked_between(self, a: int, b: int) -> bool:
        stmt = select(Block.id).where(
            or_(
                and_(Block.blocker_id == a, Block.blocked_id == b),
                and_(Block.blocker_id == b, Block.blocked_id == a),
            )
        )
        return (await self.session.execute(stmt.limit(1))).first() is not None

    async def blocked_any_way(self, viewer_id: int, others: Iterable[int]) -> set[int]:
        """Which of ``others`` block the viewer or are blocked by them (one query)."""
        ids = list(set(others))
        if not ids:
            return set()
        stmt = select(Block.blocker_id, Block.blocked_id).where(
            or_(
                and_(Block.blocker_id == viewer_id, Block.blocked_id.in_(ids)),
                and_(Block.blocked_id == viewer_id, Block.blocker_id.in_(ids)),
            )
        )
        rows = (await self.session.execute(stmt)).all()
        return {blocked if blocker == viewer_id else blocker for blocker, blocked in rows}

    async def follows(self, follower_id: int, followee_id: int) -> bool:
        stmt = select(Follow.id).where(
            Follow.follower_id == follower_id, Follow.followee_id == followee_id
        )
        return (await self.session.execute(stmt)).first() is not None

    async def add_follow(self, follower_id: int, followee_id: int) -> bool:
        added = await insert_ignore(
            self.session,
            Follow,
            {"follower_id": follower_id, "followee_id": followee_id},
            ["follower_id", "followee_id"],
        )
        relations_changed(self.session.info, follower_id)
        if added:
            await self._count(follower_id, followee_id, +1)
        return added

    async def remove_follow(self, follower_id: int, followee_id: int) -> bool:
        result = await self.session.execute(
            delete(Follow)
            .where(Follow.follower_id == follower_id, Follow.followee_id == followee_id)
            .returning(Follow.id)
        )
        relations_changed(self.session.info, follower_id)
        removed = result.first() is not None
        if removed:
            await self._count(follower_id, followee_id, -1)
        return removed

    async def _count(self, follower_id: int, followee_id: int, delta: int) -> None:
        await self.session.execute(
            update(User)
            .where(User.id == follower_id)
            .values(following_count=User.following_count + delta)
            .execution_options(synchronize_session=False)
        )
        await self.session.execute(
            update(User)
            .where(User.id == followee_id)
            .values(follower_count=User.follower_count + delta)
            .execution_options(synchronize_session=False)
        )

    async def add_block(self, blocker_id: int, blocked_id: int) -> bool:
        relations_changed(self.session.info, blocker_id, blocked_id)
        return await insert_ignore(
            self.session,
            Block,
            {"blocker_id": blocker_id, "blocked_id": blocked_id},
            ["blocker_id", "blocked_id"],
        )

    async def remove_block(self, blocker_id: int, blocked_id: int) -> bool:
        relations_changed(self.session.info, blocker_id, blocked_id)
        result = await self.session.execute(
            delete(Block)
            .where(Block.blocker_id == blocker_id, Block.blocked_id == blocked_id)
            .returning(Block.id)
        )
        return result.first() is not None

    async def add_mute(self, muter_id: int, muted_id: int) -> bool:
        relations_changed(self.session.info, muter_id)
        return await insert_ignore(
            self.session,
            Mute,
            {"muter_id": muter_id, "muted_id": muted_id},
            ["muter_id", "muted_id"],
        )

    async def remove_mute(self, muter_id: int, muted_id: int) -> bool:
        relations_changed(self.session.info, muter_id)
        result = await self.session.execute(
            delete(Mute)
            .where(Mute.muter_id == muter_id, Mute.muted_id == muted_id)
            .returning(Mute.id)
        )
        return result.first() is not None

    async def locked_for_follow(self, user_id: int) -> bool:
        """Whether the account is locked, read under a share lock of its row on PostgreSQL (a
        change of the setting waits for the caller's transaction, or the read for it)."""
        stmt = select(User.locked).where(User.id == user_id)
        if self.session.get_bind().dialect.name == "postgresql":
            stmt = stmt.with_for_update(read=True)
        return bool((await self.session.execute(stmt)).scalar_one_or_none())

    async def add_request(self, requester_id: int, target_id: int) -> bool:
        return await insert_ignore(
            self.session,
            FollowRequest,
            {"requester_id": requester_id, "target_id": target_id},
            ["requester_id", "target_id"],
        )

    async def remove_request(self, requester_id: int, target_id: int) -> bool:
        result = await self.session.execute(
            delete(FollowRequest)
            .where(FollowRequest.requester_id == requester_id, FollowRequest.target_id == target_id)
            .returning(FollowRequest.id)
        )
        return result.first() is not None

    async def page_requests(
        self, target_id: int, limit: int, before: int | None
    ) -> list[tuple[int, User, datetime]]:
        """(request id, requester, since) of the requests to follow ``target_id`` waiting,
        newest first, of accounts that are neither suspended nor deleted; keyset on
        ``(target_id, id)``."""
        stmt = (
            select(FollowRequest.id, User, FollowRequest.created_at)
            .join(User, User.id == FollowRequest.requester_id)
            .where(
                FollowRequest.target_id == target_id,
                User.suspended.is_(False),
                User.deleted_at.is_(None),
            )
            .order_by(FollowRequest.id.desc())
            .limit(limit + 1)
        )
        if before is not None:
            stmt = stmt.where(FollowRequest.id < before)
        return [(rid, user, at) for rid, user, at in (await self.session.execute(stmt)).all()]

    @staticmethod
    def _own(kind: OwnKind) -> tuple[Any, Any, Any]:
        if kind == "blocks":
            return Block, Block.blocker_id, Block.blocked_id
        return Mute, Mute.muter_id, Mute.muted_id

    async def page_own(
        self, kind: OwnKind, user_id: int, limit: int, before: int | None
    ) -> list[tuple[int, int, str, datetime]]:
        """(edge id, their id, their username, since) of the accounts ``user_id`` blocks or
        mutes (``kind``), newest first; keyset on ``(blocker_id, id)`` / ``(muter_id, id)``."""
        model, mine, theirs = self._own(kind)
        stmt = (
            select(model.id, theirs, User.username, model.created_at)
            .join(User, User.id == theirs)
            .where(mine == user_id, User.deleted_at.is_(None))
            .order_by(model.id.desc())
            .limit(limit + 1)
        )
        if before is not None:
            stmt = stmt.where(model.id < before)
        return [tuple(row) for row in (await self.session.execute(stmt)).all()]  # type: ignore[misc]

    async def user_and_own_edge(
        self, username: str, viewer_id: int, kind: OwnKind
    ) -> tuple[User | None, bool]:
        """The user named ``username`` and whether the viewer blocks (mutes) them, in one
        statement: looking the edge up apart would take longer for some names than others."""
        model, mine, theirs = self._own(kind)
        edge = select(model.id).where(mine == viewer_id, theirs == User.id).exists()
        stmt = select(User, edge).where(User.username_key == username.lower())
        row = (await self.session.execute(stmt)).first()
        return (row[0], bool(row[1])) if row is not None else (None, False)

    async def page_followers(
        self, user_id: int, limit: int, before: int | None, viewer_id: int | None
    ) -> list[tuple[int, User]]:
        """(follow id, follower) newest first; keyset on ``follows (followee_id, id)``."""
        stmt = (
            select(Follow.id, User)
            .join(User, User.id == Follow.follower_id)
            .where(Follow.followee_id == user_id, User.suspended.is_(False))
            .order_by(Follow.id.desc())
            .limit(limit + 1)
        )
        if before is not None:
            stmt = stmt.where(Follow.id < before)
        stmt = stmt.where(unblocked_with(viewer_id, Follow.follower_id))
        return [(fid, user) for fid, user in (await self.session.execute(stmt)).all()]

    async def page_following(
        self, user_id: int, limit: int, before: int | None, viewer_id: int | None
    ) -> list[tuple[int, User]]:
        stmt = (
            select(Follow.id, User)
            .join(User, User.id == Follow.followee_id)
            .where(Follow.follower_id == user_id, User.suspended.is_(False))
            .order_by(Follow.id.desc())
            .limit(limit + 1)
        )
        if before is not None:
            stmt = stmt.where(Follow.id < before)
        stmt = stmt.where(unblocked_with(viewer_id, Follow.followee_id))
        return [(fid, user) for fid, user in (await self.session.execute(stmt)).all()]

    async def muted_ids_of(self, viewer_id: int) -> set[int]:
        stmt = select(Mute.muted_id).where(Mute.muter_id == viewer_id)
        return set((await self.session.execute(stmt)).scalars())
