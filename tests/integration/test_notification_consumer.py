"""The notifications consumer driven directly through ``apply_once``: redelivery is idempotent,
concurrent consumers meet on one group, and the graph is checked at consume time."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from sqlalchemy import event, func, select, text

from tests.support.rows import make_users
from tests.support.waiting import eventually
from tidings.auth.policy import Principal, Role
from tidings.core.container import Container
from tidings.core.db import utcnow
from tidings.events import domain
from tidings.events.consumers import ConsumerRegistry
from tidings.events.delivery import apply_once
from tidings.events.models import OutboxMessage
from tidings.events.outbox import record
from tidings.events.registry import build_registry
from tidings.graph import service as graph_service
from tidings.graph.repository import GraphRepository
from tidings.mfa.models import MfaTotp
from tidings.notifications.consumers import CONSUMER
from tidings.notifications.models import NotificationActor, NotificationGroup
from tidings.notifications.repository import NotificationRepository
from tidings.notifications.schemas import Kind
from tidings.notifications.service import Notice, forget_pair, notify
from tidings.posts.models import Post


async def _post(container: Container, author_id: int) -> int:
    async with container.db.unit_of_work() as session:
        post = Post(author_id=author_id, text="hello")
        session.add(post)
        await session.flush()
        return post.id


async def _emit(container: Container, event: domain.DomainEvent) -> int:
    async with container.db.unit_of_work() as session:
        record(session, event)
        await session.flush()
        stmt = select(func.max(OutboxMessage.id)).where(
            OutboxMessage.event_type == event.event_type
        )
        event_id: int = (await session.execute(stmt)).scalar_one()
        return event_id


async def _apply(container: Container, registry: ConsumerRegistry, event_id: int) -> bool:
    return await apply_once(container.db, registry, CONSUMER, event_id, container)


async def _groups(container: Container, recipient_id: int) -> list[NotificationGroup]:
    async with container.db.unit_of_work(write=False) as session:
        return await NotificationRepository(session).page(recipient_id, 100, None)


async def _actor_rows(container: Container) -> int:
    async with container.db.unit_of_work(write=False) as session:
        stmt = select(func.count()).select_from(NotificationActor)
        return int((await session.execute(stmt)).scalar_one())


def _like(post_id: int, liker: int, author: int) -> domain.PostLiked:
    return domain.PostLiked(post_id=post_id, user_id=liker, post_author_id=author)


async def test_redelivering_an_event_yields_one_notification(container: Container) -> None:
    alice, bob = await make_users(container, "alice", "bob")
    post_id = await _post(container, alice)
    registry = build_registry()
    event_id = await _emit(container, _like(post_id, bob, alice))

    assert await _apply(container, registry, event_id) is True
    assert await _apply(container, registry, event_id) is False  # a redelivery: skipped
    await asyncio.gather(*(_apply(container, registry, event_id) for _ in range(3)))

    [group] = await _groups(container, alice)
    assert (group.kind, group.post_id, group.actor_count) == ("like", post_id, 1)
    assert group.latest_actor_ids == [bob]
    assert group.group_key == f"like:{post_id}"
    assert group.read_at is None
    assert await _actor_rows(container) == 1


async def test_a_new_like_event_by_the_same_person_does_not_count_twice(
    container: Container,
) -> None:
    """like, unlike, like: two distinct post.liked events, one actor in the group."""
    alice, bob = await make_users(container, "alice", "bob")
    post_id = await _post(container, alice)
    registry = build_registry()
    first = await _emit(container, _like(post_id, bob, alice))
    assert await _apply(container, registry, first)
    [before] = await _groups(container, alice)
    second = await _emit(container, _like(post_id, bob, alice))
    assert await _apply(container, registry, second)

    [after] = await _groups(container, alice)
    assert after.id == before.id
    assert after.actor_count == 1
    assert after.sort_key == before.sort_key  # nobody new: it does not jump to the top


async def test_concurrent_consumers_meet_on_one_group(container: Container) -> None:
    """Ten likes applied at once (ten transactions racing for the same group): one group,
    every actor counted once."""
    alice, *fans = await make_users(container, "alice", *(f"fan{n}" for n in range(10)))
    post_id = await _post(container, alice)
    registry = build_registry()
    ids = [await _emit(container, _like(post_id, fan, alice)) for fan in fans]
    again = ids[:3]  # and a few redeliveries racing their originals

    results = await asyncio.gather(*(_apply(container, registry, i) for i in ids + again))
    assert sum(results) == len(ids)

    [group] = await _groups(container, alice)
    assert group.actor_count == len(fans)
    assert len(group.latest_actor_ids) == 3
    assert set(group.latest_actor_ids) <= set(fans)
    assert await _actor_rows(container) == len(fans)


async def test_blocks_and_mutes_are_checked_when_the_event_is_consumed(
    container: Container,
) -> None:
    """The like was allowed when it happened; by the time it is consumed the graph changed."""
    alice, bob, carol, dave, erin = await make_users(
        container, "alice", "bob", "carol", "dave", "erin"
    )
    post_id = await _post(container, alice)
    registry = build_registry()
    events = {
        liker: await _emit(container, _like(post_id, liker, alice)) for liker in (bob, carol, dave)
    }
    follow = await _emit(container, domain.UserFollowed(user_id=erin, target_user_id=alice))
    async with container.db.unit_of_work() as session:
        graph = GraphRepository(session)
        await graph.add_block(alice, bob)  # the recipient blocks the actor
        await graph.add_block(carol, alice)  # the actor blocks the recipient
        await graph.add_mute(alice, erin)  # the recipient mutes the actor

    for event_id in [*events.values(), follow]:
        assert await _apply(container, registry, event_id)  # applied (and marked) all the same

    [group] = await _groups(container, alice)
    assert (group.kind, group.actor_count, group.latest_actor_ids) == ("like", 1, [dave])


async def test_a_comment_notifies_each_person_once(container: Container) -> None:
    """Replying to the post author's own comment while mentioning them: one ``reply``."""
    alice, bob, carol = await make_users(container, "alice", "bob", "carol")
    post_id = await _post(container, alice)
    registry = build_registry()
    event = domain.CommentCreated(
        comment_id=777,
        post_id=post_id,
        user_id=bob,
        parent_comment_id=555,
        post_author_id=alice,
        parent_author_id=alice,
        mentioned_user_ids=(alice, carol, bob),
    )
    assert await _apply(container, registry, await _emit(container, event))

    [for_alice] = await _groups(container, alice)
    assert (for_alice.kind, for_alice.comment_id, for_alice.post_id) == ("reply", 777, post_id)
    [for_carol] = await _groups(container, carol)
    assert (for_carol.kind, for_carol.group_key) == ("mention", "mention:comment:777")
    assert await _groups(container, bob) == []


async def test_reading_closes_a_group_and_later_activity_opens_a_new_one(
    container: Container,
) -> None:
    alice, bob, carol = await make_users(container, "alice", "bob", "carol")
    post_id = await _post(container, alice)
    registry = build_registry()
    assert await _apply(container, registry, await _emit(container, _like(post_id, bob, alice)))
    async with container.db.unit_of_work() as session:
        repo = NotificationRepository(session)
        assert await repo.mark_read(alice, None, utcnow()) == 1
        assert await repo.unread_count(alice) == 0
    assert await _apply(container, registry, await _emit(container, _like(post_id, carol, alice)))

    fresh, old = await _groups(container, alice)
    assert (fresh.read_at, fresh.group_key, fresh.latest_actor_ids) == (
        None,
        f"like:{post_id}",
        [carol],
    )
    assert (old.group_key, old.latest_actor_ids) == (None, [bob])
    assert old.read_at is not None


async def test_a_block_removes_each_from_the_others_notifications(container: Container) -> None:
    """Alice blocks bob after bob liked two of her posts (once among others, once alone) and
    she followed him: bob is no longer counted in her groups, the group only he was in goes,
    alice leaves bob's follow notification, and redelivering the block changes nothing."""
    alice, bob, carol, dave, erin, fred = await make_users(
        container, "alice", "bob", "carol", "dave", "erin", "fred"
    )
    crowded, lonely = await _post(container, alice), await _post(container, alice)
    registry = build_registry()
    for liker in (carol, dave, bob, erin, fred):  # bob is among the three latest
        event_id = await _emit(container, _like(crowded, liker, alice))
        assert await _apply(container, registry, event_id)
    assert await _apply(container, registry, await _emit(container, _like(lonely, bob, alice)))
    follow = domain.UserFollowed(user_id=alice, target_user_id=bob)
    assert await _apply(container, registry, await _emit(container, follow))
    before = {g.post_id: g for g in await _groups(container, alice)}
    assert before[crowded].latest_actor_ids == [fred, erin, bob]
    assert before[crowded].actor_count == 5
    assert [g.kind for g in await _groups(container, bob)] == ["follow"]

    async with container.db.unit_of_work() as session:
        await GraphRepository(session).add_block(alice, bob)
    block = await _emit(container, domain.UserBlocked(user_id=alice, target_user_id=bob))
    assert await _apply(container, registry, block)

    [group] = await _groups(container, alice)  # the lonely like is gone
    assert group.post_id == crowded
    assert group.actor_count == 4
    assert group.latest_actor_ids == [fred, erin, dave]  # dave moves up into the latest three
    assert await _groups(container, bob) == []
    assert await _actor_rows(container) == 4
    assert not await _apply(container, registry, block)  # redelivered: applied once only
    async with container.db.unit_of_work() as session:  # and running it again finds nothing
        assert await forget_pair(session, alice, bob) == 0


async def test_a_block_event_consumed_after_the_unblock_removes_nothing(
    container: Container,
) -> None:
    """A backlog or a replayed dead letter can deliver the block late: if the two are no
    longer blocked by then, what arrived since stays."""
    alice, bob = await make_users(container, "alice", "bob")
    registry = build_registry()
    async with container.db.unit_of_work() as session:
        await GraphRepository(session).add_block(alice, bob)
    block = await _emit(container, domain.UserBlocked(user_id=alice, target_user_id=bob))
    async with container.db.unit_of_work() as session:
        await GraphRepository(session).remove_block(alice, bob)
    follow = domain.UserFollowed(user_id=bob, target_user_id=alice)
    assert await _apply(container, registry, await _emit(container, follow))
    assert await _apply(container, registry, block)  # consumed (and marked) all the same
    [group] = await _groups(container, alice)
    assert (group.kind, group.actor_count, group.latest_actor_ids) == ("follow", 1, [bob])


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)  # SQLite: one writer at a time
async def test_a_block_during_a_notification_leaves_no_notice(container: Container) -> None:
    """Bob's like is being consumed when alice blocks him. Either the block commits first and
    the consumer sees it, or the notice commits first and the block's consumer removes it.
    Never the third order, where the notice checked before the block, committed after it,
    and the block's consumer had already run and found nothing."""
    alice, bob = await make_users(container, "alice", "bob")
    post_id = await _post(container, alice)
    notice = Notice(alice, Kind.LIKE, f"like:{post_id}", post_id=post_id)
    alice_acts = Principal(user_id=alice, username="alice", role=Role.USER, session_id=1)

    async def block() -> None:
        async with container.db.unit_of_work() as session:
            await graph_service.block(session, alice_acts, "bob")

    async def forget() -> None:  # what the block's consumer does once it has committed
        async with container.db.unit_of_work() as session:
            await forget_pair(session, alice, bob)

    async def block_waits_or_ends() -> bool:
        if blocking.done():
            return True
        async with container.db.unit_of_work(write=False) as other:
            stmt = text(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            )
            return bool((await other.execute(stmt)).scalar_one())

    async with container.db.unit_of_work() as session:  # the like's consumer, in flight
        await notify(session, bob, [notice])
        blocking = asyncio.create_task(block())
        await eventually(block_waits_or_ends, within=10)
        waited = not blocking.done()
        if not waited:  # the block did not wait for this unit of work: its consumer runs now
            await forget()
    await blocking
    if waited:
        await forget()
    assert waited  # for the notice's commit, on the pair's lock
    assert await _groups(container, alice) == []


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
async def test_staff_are_found_through_their_partial_index(container: Container) -> None:
    """The consumer's staff query is answered from ``ix_users_staff`` (its predicate matches
    the index's), so a new report never reads every user."""
    [mod, *_users] = await make_users(container, "staffer", *(f"u{n}" for n in range(300)))
    async with container.db.unit_of_work() as session:
        await session.execute(
            text("UPDATE users SET role = 'moderator' WHERE id = :id"), {"id": mod}
        )
    async with container.db.unit_of_work() as session:
        await session.execute(text("ANALYZE users"))  # a few staff among many users, as live
        captured: list[tuple[str, Any]] = []

        def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
            captured.append((statement, parameters))

        engine = session.get_bind()
        event.listen(engine, "before_cursor_execute", capture)
        try:
            assert await NotificationRepository(session).staff([0], second_factor=False) == [mod]
        finally:
            event.remove(engine, "before_cursor_execute", capture)
        [(statement, parameters)] = captured
        driver = (await (await session.connection()).get_raw_connection()).driver_connection
        plan = await driver.fetch("EXPLAIN (FORMAT JSON) " + statement, *parameters)
        shown = json.dumps(plan[0][0])
        assert '"Index Name": "ix_users_staff"' in shown, shown


async def test_with_staff_mfa_required_only_staff_with_a_second_factor_are_told(
    container: Container,
) -> None:
    """TIDINGS_STAFF_MFA=required: a moderator without a confirmed authenticator acts as a
    user, so is not told of reports (nor is one whose authenticator is still pending)."""
    with_totp, pending, without, _user = await make_users(container, "m1", "m2", "m3", "u1")
    async with container.db.unit_of_work() as session:
        await session.execute(
            text("UPDATE users SET role = 'moderator' WHERE id IN (:a, :b, :c)"),
            {"a": with_totp, "b": pending, "c": without},
        )
        session.add(MfaTotp(user_id=with_totp, secret_encrypted="x", confirmed_at=utcnow()))
        session.add(MfaTotp(user_id=pending, secret_encrypted="x"))
    async with container.db.unit_of_work(write=False) as session:
        repo = NotificationRepository(session)
        assert await repo.staff([], second_factor=True) == [with_totp]
        assert await repo.staff([], second_factor=False) == sorted([with_totp, pending, without])
        assert await repo.staff([pending], second_factor=False) == sorted([with_totp, without])
