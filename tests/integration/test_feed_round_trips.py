"""A feed page costs a fixed number of SQL statements and Redis round trips, whatever its size
or the number of distinct authors on it (real Redis; SQLite and PostgreSQL).

Forty authors post one post each and the viewer follows them all; pages of 5 and of 40 (five
and forty distinct authors) are served from the warm Redis timeline through the service function
exactly as a request would, and their costs are compared.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiosqlite
import asyncpg
import pytest
from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection
from sqlalchemy import event, insert

from tests.conftest import make_settings
from tests.support.rowcache import drop_keys
from tidings.accounts.models import User
from tidings.auth.policy import Principal, Role
from tidings.core.container import Container
from tidings.core.db import CUSTOM_PLANS, GENERIC_PLANS
from tidings.core.ids import new_id
from tidings.core.pagination import PageParams
from tidings.feeds import store as store_module
from tidings.feeds.fanout import fan_out
from tidings.feeds.service import rebuild_timeline
from tidings.feeds.store import store_of
from tidings.graph.models import Follow
from tidings.posts.models import Post
from tidings.timelines import service as timelines
from tidings.timelines.schemas import TimelineFilters

AUTHORS = 40


@dataclass
class Counts:
    sql: int = 0
    redis: int = 0
    statements: list[str] = field(default_factory=list, compare=False)


@pytest.fixture
def row_cache() -> str:
    return "none"


@pytest.fixture
def fanout_batch() -> int:
    return 1000


@pytest.fixture
def feed_store() -> str:
    return "redis"


@pytest.fixture
async def container(
    tmp_path: Path, database_url: str, row_cache: str, fanout_batch: int, feed_store: str
) -> AsyncIterator[Container]:
    prefix = f"test:feedcost:{secrets.token_hex(6)}:"
    settings = make_settings(
        tmp_path / "data",
        database_url,
        feed_store=feed_store,
        feed_key_prefix=prefix,
        row_cache=row_cache,
        cache_key_prefix=f"{prefix}cache:",
        fanout_batch=fanout_batch,
    )
    built = Container.build(settings)
    yield built
    redis = Redis.from_url(settings.redis_url)
    await drop_keys(redis, prefix)
    await redis.aclose()
    await built.close()


@pytest.fixture
def counts(container: Container, monkeypatch: pytest.MonkeyPatch) -> Iterator[Counts]:
    counted = Counts()
    # the set of merged authors is read once (each process rereads it every CELEBS_SECONDS,
    # which a slow run could otherwise cross between two pages it compares)
    monkeypatch.setattr(store_module, "CELEBS_SECONDS", 3600.0)

    def on_sql(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        counted.sql += 1
        counted.statements.append(statement)

    send = AbstractConnection.send_packed_command

    async def counting_send(self: AbstractConnection, *args: Any, **kwargs: Any) -> None:
        counted.redis += 1  # one write of one command or of a whole pipeline: one round trip
        await send(self, *args, **kwargs)

    monkeypatch.setattr(AbstractConnection, "send_packed_command", counting_send)
    # hot reads bypass SQLAlchemy on PostgreSQL (tidings.core.rawsql): count them at asyncpg
    driver_fetch = asyncpg.Connection.fetch

    async def counting_fetch(self: asyncpg.Connection, query: str, *args: Any, **kw: Any) -> Any:
        counted.sql += 1
        counted.statements.append(query)
        return await driver_fetch(self, query, *args, **kw)

    monkeypatch.setattr(asyncpg.Connection, "fetch", counting_fetch)
    # ... and on SQLite they run with one execute_fetchall on the aiosqlite connection
    sqlite_fetch = aiosqlite.Connection.execute_fetchall

    async def counting_fetchall(self: aiosqlite.Connection, sql: str, *args: Any) -> Any:
        counted.sql += 1
        counted.statements.append(sql)
        return await sqlite_fetch(self, sql, *args)

    monkeypatch.setattr(aiosqlite.Connection, "execute_fetchall", counting_fetchall)
    engine = container.db.engine.sync_engine
    event.listen(engine, "before_cursor_execute", on_sql)
    yield counted
    event.remove(engine, "before_cursor_execute", on_sql)


async def _seed(container: Container, *, references: bool = False) -> int:
    """A viewer following ``AUTHORS`` authors with a post each; with ``references``, each
    author's post shares (odd) or quotes (even) a post by someone the viewer does not follow,
    each by another author."""
    viewer = new_id()
    authors = [new_id() for _ in range(AUTHORS)]
    others = [new_id() for _ in range(AUTHORS if references else 0)]
    async with container.db.unit_of_work() as session:
        users = [
            {"id": uid, "username": f"u{i}", "username_key": f"u{i}", "email": f"u{i}@x.test"}
            for i, uid in enumerate([viewer, *authors, *others])
        ]
        await session.execute(insert(User), users)
        await session.execute(
            insert(Follow), [{"follower_id": viewer, "followee_id": a} for a in authors]
        )
        named = [new_id() for _ in others]
        if named:
            targets = [
                {"id": i, "author_id": o, "text": "x"} for i, o in zip(named, others, strict=True)
            ]
            await session.execute(insert(Post), targets)
        posts: list[dict[str, Any]] = [{"author_id": a, "text": "hi"} for a in authors]
        for i, target in enumerate(named):
            posts[i] |= {"kind": "share", "share_of_id": target} if i % 2 else {}
            posts[i] |= {} if i % 2 else {"quote_of_id": target}
        await session.execute(insert(Post), posts)
        store = store_of(session)
        if store is not None:
            await rebuild_timeline(store, session, viewer)
    return viewer


async def _page(container: Container, viewer: int, limit: int, counts: Counts) -> Counts:
    principal = Principal(user_id=viewer, username="u0", role=Role.USER, session_id=0)
    before = Counts(counts.sql, counts.redis)
    counts.statements.clear()
    async with container.db.unit_of_work(write=False) as session:
        posts, _ = await timelines.home_feed(
            session, principal, PageParams(limit=limit, cursor=None), TimelineFilters()
        )
    assert len(posts) == limit
    assert len({post["author"]["id"] for post in posts}) == limit
    return Counts(counts.sql - before.sql, counts.redis - before.redis, list(counts.statements))


async def test_feed_page_cost_does_not_grow_with_size_or_authors(
    container: Container, counts: Counts
) -> None:
    viewer = await _seed(container)
    await _page(container, viewer, 5, counts)  # warm-up (connections, prepared statements)
    small = await _page(container, viewer, 5, counts)
    large = await _page(container, viewer, AUTHORS, counts)
    assert large == small, f"5 posts: {small}; {AUTHORS} posts: {large}"
    assert small.redis == 1  # the window (the warm-up read the set of merged authors)
    assert small.sql <= 10  # followed merged authors (when any), filter, hydration (≤ 7)


async def test_a_page_without_the_row_cache_builds_no_orm_instances(
    container: Container, counts: Counts
) -> None:
    """Without the row cache the page's posts, the posts they refer to and the authors are
    read on the driver as plain objects: a page only rendered fills no identity map."""
    viewer = await _seed(container)
    await _page(container, viewer, 5, counts)
    loaded: list[object] = []

    def on_load(target: object, _context: object) -> None:
        loaded.append(target)

    for model in (Post, User):
        event.listen(model, "load", on_load)
    try:
        await _page(container, viewer, AUTHORS, counts)
    finally:
        for model in (Post, User):
            event.remove(model, "load", on_load)
    assert loaded == []


@pytest.mark.parametrize("row_cache", ["redis"])
async def test_warm_page_with_the_row_cache_queries_nothing(
    container: Container, counts: Counts
) -> None:
    """With the row cache warm, a page runs no SQL at all (the candidates are filtered on
    cached rows and relations, tidings.feeds.rules) and costs three Redis round trips whatever
    its size: the window (with the touch), the candidates' rows with the posts they refer to
    and the authors' profiles (RowCache.get_linked), and the viewer's relations."""
    viewer = await _seed(container)
    await _page(container, viewer, AUTHORS, counts)  # fills the cache
    checkouts: list[object] = []

    def on_checkout(dbapi_connection: object, *_args: object) -> None:
        checkouts.append(dbapi_connection)

    pool = container.db.engine.sync_engine.pool
    event.listen(pool, "checkout", on_checkout)
    try:
        small = await _page(container, viewer, 5, counts)
        large = await _page(container, viewer, AUTHORS, counts)
    finally:
        event.remove(pool, "checkout", on_checkout)
    assert large == small, f"5 posts: {small}; {AUTHORS} posts: {large}"
    assert small.statements == []
    assert small.sql == 0
    assert small.redis == 3
    assert checkouts == []  # not even a connection from the pool (and its ping)


@pytest.mark.parametrize("row_cache", ["redis"])
async def test_warm_page_of_shares_and_quotes_costs_the_same(
    container: Container, counts: Counts
) -> None:
    """Shares and quotes of posts by people the viewer does not follow: the posts they name
    and those posts' authors come in the same round trip as the page's own posts."""
    viewer = await _seed(container, references=True)
    first = await _page(container, viewer, AUTHORS, counts)  # fills the cache
    assert first.sql > 0
    small = await _page(container, viewer, 5, counts)
    large = await _page(container, viewer, AUTHORS, counts)
    assert large == small, f"5 posts: {small}; {AUTHORS} posts: {large}"
    assert (small.sql, small.redis) == (0, 3)


@pytest.mark.parametrize(("feed_store", "row_cache"), [("none", "memory")])
async def test_warm_embedded_page_runs_the_pull_query_alone(
    container: Container, counts: Counts
) -> None:
    """The embedded default (the pull feed, the in-memory row cache): once warm, a page runs
    one statement, the pull query (ids and references), whatever its size; the bodies, the
    authors and the viewer's relations come from memory."""
    viewer = await _seed(container)
    await _page(container, viewer, AUTHORS, counts)  # fills the cache
    small = await _page(container, viewer, 5, counts)
    large = await _page(container, viewer, AUTHORS, counts)
    assert large == small, f"5 posts: {small}; {AUTHORS} posts: {large}"
    queries = [q for q in small.statements if not q.startswith("BEGIN")]  # SQLite's BEGIN
    assert len(queries) == 1, queries
    assert "posts.share_of_id" in queries[0]  # the pull query, returning references


@pytest.mark.parametrize("row_cache", ["redis"])
async def test_a_cold_page_costs_one_more_redis_round_trip_than_a_warm_one(
    container: Container, counts: Counts
) -> None:
    """With the row cache cold, each read costs one more Redis round trip whatever the page:
    one script reads every key and takes the lock of each miss, one more fills them (the
    candidates' rows; their authors' profiles; the viewer's relations); the misses are loaded
    with one statement per kind."""
    viewer = await _seed(container)
    await _page(container, viewer, AUTHORS, counts)  # the scripts are loaded on Redis
    prefix = container.settings.cache_key_prefix

    async def cold_page(limit: int) -> Counts:
        redis = Redis.from_url(container.settings.redis_url)
        try:
            keys = [key async for key in redis.scan_iter(match=f"{prefix}*", count=1000)]
            await redis.delete(*keys)
        finally:
            await redis.aclose()
        return await _page(container, viewer, limit, counts)

    small = await cold_page(5)
    large = await cold_page(AUTHORS)
    assert large == small, f"5 posts: {small}; {AUTHORS} posts: {large}"
    assert small.redis == 7  # the window + (read-or-lock + fill) x (posts, profiles, relations)
    queries = [q for q in small.statements if not q.startswith("BEGIN")]  # SQLite's BEGIN
    assert len(queries) == 3, queries  # the posts, the authors, the relations


@pytest.mark.parametrize("row_cache", ["redis"])
@pytest.mark.parametrize("backend", ["postgres"])
async def test_warm_user_timeline_opens_no_transaction(
    container: Container, counts: Counts, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A user's posts with the row cache warm, on PostgreSQL: two statements on the driver
    (the user by name, the page's ids; the viewer's relationship with the user, and their
    likes and shares among the posts, come from the cached relations) and no transaction (no
    ``BEGIN``/``COMMIT`` round trips) for a read-only page."""
    viewer = await _seed(container)
    begun: list[str] = []
    driver_execute = asyncpg.Connection.execute

    async def noting_execute(self: asyncpg.Connection, query: str, *args: Any, **kw: Any) -> Any:
        begun.append(query)
        return await driver_execute(self, query, *args, **kw)

    monkeypatch.setattr(asyncpg.Connection, "execute", noting_execute)
    principal = Principal(user_id=viewer, username="u0", role=Role.USER, session_id=0)
    for _ in range(2):  # the first fills the cache
        begun.clear()
        counts.statements.clear()
        async with container.db.unit_of_work(write=False) as session:
            posts, _ = await timelines.user_posts(
                session, principal, "u1", PageParams(limit=20, cursor=None), TimelineFilters()
            )
        assert len(posts) == 1
    # the checkout's ping aside (a SET back to custom plans on a connection that ran generic
    # ones): no BEGIN, no COMMIT
    assert [q for q in begun if q not in ("SELECT 1", GENERIC_PLANS, CUSTOM_PLANS)] == []
    assert len(counts.statements) == 2, counts.statements


async def test_fan_out_writes_one_round_trip_per_batch(
    container: Container, counts: Counts
) -> None:
    viewer = await _seed(container)
    async with container.db.unit_of_work() as session:
        author = new_id()
        await session.execute(
            insert(User), [{"id": author, "username": "w", "username_key": "w", "email": "w@x"}]
        )
        await session.execute(insert(Follow), [{"follower_id": viewer, "followee_id": author}])
        post = new_id()
        await session.execute(insert(Post), [{"id": post, "author_id": author, "text": "x"}])
    store = store_of(container.db.sessions())
    assert store is not None
    async with container.db.unit_of_work() as session:
        start = counts.redis
        assert await fan_out(store, session, post, author) == 1  # the viewer's timeline
        assert counts.redis - start <= 3  # author timeline + one batch (+ script load)


@pytest.mark.parametrize("fanout_batch", [4])
@pytest.mark.parametrize("n_followers", [10, 8])
async def test_fan_out_in_batches_reaches_every_existing_timeline(
    container: Container, counts: Counts, n_followers: int
) -> None:
    """Ten (or eight) followers in batches of four (the next batch is read while the previous
    one is written; eight leave a last batch that is exactly full, then an empty read): every
    follower with a timeline gets the post, one script call per batch."""
    author, followers, post = new_id(), [new_id() for _ in range(n_followers)], new_id()
    async with container.db.unit_of_work() as session:
        await session.execute(
            insert(User),
            [
                {"id": uid, "username": f"f{i}", "username_key": f"f{i}", "email": f"f{i}@x"}
                for i, uid in enumerate([author, *followers])
            ],
        )
        await session.execute(
            insert(Follow), [{"follower_id": uid, "followee_id": author} for uid in followers]
        )
    store = store_of(container.db.sessions())
    assert store is not None
    async with container.db.unit_of_work() as session:
        for uid in followers[:-1]:  # the last follower has no timeline (inactive): skipped
            await rebuild_timeline(store, session, uid)
        await session.execute(insert(Post), [{"id": post, "author_id": author, "text": "x"}])
    async with container.db.unit_of_work() as session:
        start = counts.redis
        assert await fan_out(store, session, post, author) == n_followers - 1
        assert counts.redis - start <= 1 + 3 + 1  # author timeline, 3 batches, script load
    for uid in followers[:-1]:
        window = await store.window(uid, [], None, 20)
        assert window is not None
        assert post in window.ids, uid
    assert not await store.redis.exists(store.timeline_key(followers[-1]))
