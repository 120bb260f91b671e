"""The home feed from the feed store, with the pull query wherever the store cannot answer.

A page is the same as the pull query's (:mod:`tidings.timelines.repository`) for the same viewer
and cursor: the store only proposes candidate ids, newest first; one query keeps those the pull
query would return (its own conditions, restricted to the candidates); below the window the
store covers, the pull query itself continues. So unfollows, blocks, mutes, suspensions,
deletions and visibility changes never need the stored timelines repaired to be correct.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from tidings.core.cache import cache_of
from tidings.feeds import rules
from tidings.feeds.repository import FeedRepository
from tidings.feeds.store import INCOMPLETE, FeedStore, RedisError, log
from tidings.posts.cache import PostView
from tidings.timelines.repository import TimelineRepository
from tidings.timelines.schemas import TimelineFilters

MAX_ROUNDS = 3  # store scans per page before the pull query takes over (sparse windows)
MAX_SCAN = 200  # candidate ids read per list and round


async def feed_rows(
    store: FeedStore,
    session: AsyncSession,
    viewer_id: int,
    fetch: int,
    before: int | None,
    filters: TimelineFilters,
) -> list[PostView]:
    """Up to ``fetch`` feed posts below ``before``, newest first (the pull query's answer)."""
    if store.available:
        try:
            rows = await _stored(store, session, viewer_id, fetch, before, filters)
        except RedisError as exc:
            store.failed(exc)
            rows = None
        if rows is not None:
            return rows
    return await TimelineRepository(session).home_feed(viewer_id, fetch, before, filters)


async def rebuild_timeline(store: FeedStore, session: AsyncSession, viewer_id: int) -> None:
    """Hibernation ends: the timeline is rebuilt from the database (newest ``cap`` posts)."""
    await store.begin_timeline(viewer_id)  # fan-out reaches it from now on
    ids = await FeedRepository(session).timeline_ids(viewer_id, store.cap)
    await store.store_timeline(viewer_id, ids)
    log.debug("feed_timeline_rebuilt", user_id=viewer_id, entries=len(ids))


async def build_author_lists(store: FeedStore, session: AsyncSession, authors: list[int]) -> None:
    repo = FeedRepository(session)
    for author in await store.missing_authors(authors):
        await store.store_author(author, await repo.author_ids(author, store.cap))


async def _filtered(
    session: AsyncSession,
    repo: FeedRepository,
    viewer_id: int,
    ids: list[int],
    filters: TimelineFilters,
) -> list[PostView]:
    """The candidates the feed shows, newest first: with a row cache, decided on the cached
    rows and relations (:mod:`tidings.feeds.rules`: a warm page queries nothing), else by one
    query."""
    if cache_of(session) is None:
        return await repo.filter_feed(viewer_id, ids, filters)
    return await rules.shown(session, viewer_id, ids, filters)


async def _stored(
    store: FeedStore,
    session: AsyncSession,
    viewer_id: int,
    fetch: int,
    before: int | None,
    filters: TimelineFilters,
) -> list[PostView] | None:
    """None when the store cannot answer this page (the caller pulls)."""
    repo = FeedRepository(session)
    others = [c for c in await store.celebs() if c != viewer_id]
    if not others:
        authors: list[int] = []
    elif cache_of(session) is None:
        authors = await repo.followed_among(viewer_id, others)
    else:
        authors = await rules.followed_among(session, viewer_id, others)
    rows: list[PostView] = []
    cursor = before
    scan = min(MAX_SCAN, max(fetch, 20))
    for round_ in range(MAX_ROUNDS):
        window = await store.window(viewer_id, authors, cursor, scan, touch=round_ == 0)
        if window is INCOMPLETE:  # new or inactive user: pull now, and have a timeline next
            await rebuild_timeline(store, session, viewer_id)
            return None
        if window is None:  # an author list is missing (or the timeline just expired)
            await build_author_lists(store, session, authors)
            window = await store.window(viewer_id, authors, cursor, scan)
            if window is None:
                return None
        if cursor is not None and window.floor >= cursor:
            break  # the cursor is already below what the store holds
        rows += await _filtered(session, repo, viewer_id, window.ids, filters)
        if len(rows) >= fetch:
            return rows[:fetch]
        if window.floor == 0:  # every list is empty: the feed ends here
            return rows
        cursor = window.floor
        if window.complete:
            break
    # past the window (or a sparse one): the pull query continues below the scanned range
    pull = TimelineRepository(session)
    return rows + await pull.home_feed(viewer_id, fetch - len(rows), cursor, filters)
