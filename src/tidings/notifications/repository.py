"""Queries on notification groups and their actors (SQLAlchemy Core/ORM, both dialects)."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    and_,
    delete,
    exists,
    func,
    literal_column,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from tidings.accounts.models import STAFF, User
from tidings.core.db import insert_ignore, utcnow
from tidings.core.ids import new_id
from tidings.graph.models import Block, Follow, FollowRequest, Mute
from tidings.mfa.models import MfaTotp
from tidings.notifications.models import NotificationActor, NotificationGroup

LATEST_ACTORS = 3
OPEN_ATTEMPTS = 3


class NotificationRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # --- writing (the consumer) ----------------------------------------------------------------

    async def open_group(
        self, recipient_id: int, kind: str, group_key: str, **subject: Any
    ) -> NotificationGroup:
        """The recipient's unread group ``group_key``, created if missing, locked for update.

        ``INSERT ... ON CONFLICT DO NOTHING`` then ``SELECT ... FOR UPDATE``: concurrent
        consumers meet on one row (PostgreSQL) or queue on the write lock (SQLite). If a
        mark-read closes the group in between, the select finds nothing and we open a new one.
        """
        values = {"recipient_id": recipient_id, "kind": kind, "group_key": group_key, **subject}
        for _attempt in range(OPEN_ATTEMPTS):
            await insert_ignore(
                self.session,
                NotificationGroup,
                {**values, "actor_count": 0, "latest_actor_ids": [], "sort_key": new_id()},
                ["recipient_id", "group_key"],
            )
            stmt = (
                select(NotificationGroup)
                .where(
                    NotificationGroup.recipient_id == recipient_id,
                    NotificationGroup.group_key == group_key,
                )
                .with_for_update()
                .execution_options(populate_existing=True)
            )
            group = (await self.session.execute(stmt)).scalar_one_or_none()
            if group is not None:
                return group
        raise RuntimeError(f"notification group {group_key!r} kept closing; retry the event")

    async def add_actor(self, group: NotificationGroup, actor_id: int) -> bool:
        """Count ``actor_id`` in the (locked) group once; a new actor moves it to the top."""
        added = await insert_ignore(
            self.session,
            NotificationActor,
            {"group_id": group.id, "actor_id": actor_id},
            ["group_id", "actor_id"],
        )
        if added:
            previous = [a for a in group.latest_actor_ids or [] if a != actor_id]
            group.latest_actor_ids = [actor_id, *previous][:LATEST_ACTORS]
            group.actor_count += 1
            group.sort_key = new_id()
            group.last_event_at = utcnow()
            await self.session.flush()
        return added

    async def count_report(self, group: NotificationGroup, report_id: int) -> None:
        """One more report in the (locked) ``report`` group: it counts reports, names nobody,
        and moves to the top."""
        group.actor_count += 1
        # the newest report, whatever order the events are applied in (ids grow with time)
        previous = int((group.data or {}).get("latest_report_id") or 0)
        group.data = {"latest_report_id": str(max(previous, report_id))}
        group.sort_key = new_id()
        group.last_event_at = utcnow()
        await self.session.flush()

    async def staff(self, excluding: Iterable[int], *, second_factor: bool) -> list[int]:
        """Moderators and admins who can act (not suspended, not deleted; with
        ``second_factor``, with a confirmed authenticator, as ``TIDINGS_STAFF_MFA=required``
        asks of their powers), ascending — through the partial index of staff accounts
        (``ix_users_staff``), never a scan of every user."""
        conditions: list[ColumnElement[bool]] = [
            literal_column(STAFF, Boolean),  # the index's predicate as is, not a bound value
            User.suspended.is_(False),
            User.deleted_at.is_(None),
            User.id.not_in(list(set(excluding))),
        ]
        if second_factor:
            conditions.append(
                exists().where(MfaTotp.user_id == User.id, MfaTotp.confirmed_at.is_not(None))
            )
        stmt = select(User.id).where(*conditions).order_by(User.id)
        return list((await self.session.execute(stmt)).scalars())

    async def groups_with_actor(self, recipient_id: int, actor_id: int) -> list[NotificationGroup]:
        """The recipient's groups (read or not) that count ``actor_id``, locked for update."""
        stmt = (
            select(NotificationGroup)
            .join(
                NotificationActor,
                and_(
                    NotificationActor.group_id == NotificationGroup.id,
                    NotificationActor.actor_id == actor_id,
                ),
            )
            .where(NotificationGroup.recipient_id == recipient_id)
            .order_by(NotificationGroup.id)
            .with_for_update(of=NotificationGroup)
            .execution_options(populate_existing=True)
        )
        return list((await self.session.execute(stmt)).scalars())

    async def remove_actor(self, group: NotificationGroup, actor_id: int) -> None:
        """Stop counting ``actor_id`` in the (locked) group: the count and the latest actors are
        recomputed from who is left; a group with nobody left is deleted."""
        await self.session.execute(
            delete(NotificationActor).where(
                NotificationActor.group_id == group.id, NotificationActor.actor_id == actor_id
            )
        )
        latest = (
            select(NotificationActor.actor_id)
            .where(NotificationActor.group_id == group.id)
            .order_by(NotificationActor.created_at.desc(), NotificationActor.actor_id.desc())
            .limit(LATEST_ACTORS)
        )
        remaining = select(func.count()).where(NotificationActor.group_id == group.id)
        left = int((await self.session.execute(remaining)).scalar_one())
        if left == 0:
            await self.session.delete(group)
        else:
            # newest first, as add_actor keeps them (an actor is added once, when first seen)
            group.latest_actor_ids = list((await self.session.execute(latest)).scalars())
            group.actor_count = left
        await self.session.flush()

    async def add(self, group: NotificationGroup) -> NotificationGroup:
        self.session.add(group)
        await self.session.flush()
        return group

    # --- reading (the API) ---------------------------------------------------------------------

    async def page(
        self,
        recipient_id: int,
        limit: int,
        before: int | None,
        kinds: Collection[str] = (),
        unread: bool = False,
        hidden: Collection[str] = (),
    ) -> list[NotificationGroup]:
        """Up to ``limit + 1`` groups, newest activity first; keyset on ``sort_key``."""
        stmt = (
            select(NotificationGroup)
            .where(NotificationGroup.recipient_id == recipient_id)
            .order_by(NotificationGroup.sort_key.desc())
            .limit(limit + 1)
        )
        if before is not None:
            stmt = stmt.where(NotificationGroup.sort_key < before)
        if kinds:
            stmt = stmt.where(NotificationGroup.kind.in_(sorted(kinds)))
        if unread:
            stmt = stmt.where(NotificationGroup.read_at.is_(None))
        if hidden:
            stmt = stmt.where(NotificationGroup.kind.not_in(sorted(hidden)))
        return list((await self.session.execute(stmt)).scalars())

    async def get(self, recipient_id: int, group_id: int) -> NotificationGroup | None:
        stmt = select(NotificationGroup).where(
            NotificationGroup.id == group_id, NotificationGroup.recipient_id == recipient_id
        )
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def unread_count(self, recipient_id: int, hidden: Collection[str] = ()) -> int:
        stmt = (
            select(func.count())
            .select_from(NotificationGroup)
            .where(
                NotificationGroup.recipient_id == recipient_id,
                NotificationGroup.read_at.is_(None),
            )
        )
        if hidden:
            stmt = stmt.where(NotificationGroup.kind.not_in(sorted(hidden)))
        return int((await self.session.execute(stmt)).scalar_one())

    async def mark_read(self, recipient_id: int, up_to_sort_key: int | None, at: datetime) -> int:
        """Close unread groups (all, or those at or below a sort key); returns how many.

        On PostgreSQL the groups are first locked in id order, the order every other writer
        of several of one recipient's groups uses (:meth:`groups_with_actor`), so the two
        never deadlock; SQLite serialises writers anyway."""
        unread = [
            NotificationGroup.recipient_id == recipient_id,
            NotificationGroup.read_at.is_(None),
        ]
        if up_to_sort_key is not None:
            unread.append(NotificationGroup.sort_key <= up_to_sort_key)
        if self.session.get_bind().dialect.name == "postgresql":
            locked = (
                select(NotificationGroup.id)
                .where(*unread)
                .order_by(NotificationGroup.id)
                .with_for_update()
            )
            await self.session.execute(locked)
        stmt = (
            update(NotificationGroup)
            .where(*unread)
            .values(read_at=at, group_key=None)
            .execution_options(synchronize_session=False)
        )
        result: Any = await self.session.execute(stmt)
        return int(result.rowcount or 0)

    async def visible_actors(self, recipient_id: int, ids: Iterable[int]) -> dict[int, User]:
        """The users among ``ids`` the recipient may still see (not suspended, not blocked
        either way), in one query."""
        wanted = list(set(ids))
        if not wanted:
            return {}
        blocked = exists().where(
            or_(
                and_(Block.blocker_id == recipient_id, Block.blocked_id == User.id),
                and_(Block.blocker_id == User.id, Block.blocked_id == recipient_id),
            )
        )
        stmt = select(User).where(User.id.in_(wanted), User.suspended.is_(False), ~blocked)
        return {user.id: user for user in (await self.session.execute(stmt)).scalars()}

    # --- reverse graph look-ups GraphRepository does not offer --------------------------------

    async def shut_out(self, actor_id: int, candidates: Iterable[int]) -> tuple[bool, set[int]]:
        """Whether the actor is a deleted account, and which of ``candidates`` (the actor not
        among them) are deleted accounts or blocked either way with the actor, in one query.
        Deleted: erased, or being erased."""
        ids = set(candidates) - {actor_id}
        blocked = exists().where(
            or_(
                and_(Block.blocker_id == actor_id, Block.blocked_id == User.id),
                and_(Block.blocker_id == User.id, Block.blocked_id == actor_id),
            )
        )
        stmt = select(User.id).where(
            User.id.in_([actor_id, *ids]),
            or_(User.deleted_at.is_not(None), and_(User.id != actor_id, blocked)),
        )
        found = set((await self.session.execute(stmt)).scalars())
        return actor_id in found, found - {actor_id}

    async def muting(self, muted_id: int, candidates: Iterable[int]) -> set[int]:
        """Which of ``candidates`` mute ``muted_id``."""
        ids = list(set(candidates))
        if not ids:
            return set()
        stmt = select(Mute.muter_id).where(Mute.muted_id == muted_id, Mute.muter_id.in_(ids))
        return set((await self.session.execute(stmt)).scalars())

    async def request_waiting(self, requester_id: int, target_id: int) -> bool:
        stmt = select(FollowRequest.id).where(
            FollowRequest.requester_id == requester_id, FollowRequest.target_id == target_id
        )
        return (await self.session.execute(stmt)).first() is not None

    async def following(self, followee_id: int, candidates: Iterable[int]) -> set[int]:
        """Which of ``candidates`` follow ``followee_id``."""
        ids = list(set(candidates))
        if not ids:
            return set()
        stmt = select(Follow.follower_id).where(
            Follow.followee_id == followee_id, Follow.follower_id.in_(ids)
        )
        return set((await self.session.execute(stmt)).scalars())
