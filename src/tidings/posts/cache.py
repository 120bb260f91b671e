"""Posts and author profiles through the row cache (:mod:`tidings.core.cache`), and the
write-side bookkeeping that evicts them.

A cached post is the whole row (counters included: every counter change goes through
:meth:`tidings.posts.repository.PostRepository.bump`, which records the eviction); a cached
profile is what a rendered author shows plus ``suspended`` and ``role`` (the access-token
check reads those two, see :func:`tidings.auth.service.authenticate`). Rows come back as
plain read-only objects (:class:`CachedPost`, :class:`CachedProfile`) with the attributes
rendering reads, so rendering code does not care where they came from.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from redis.asyncio import Redis
from sqlalchemy import Select, event
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session, UOWTransaction

from tidings.accounts.models import User
from tidings.core.cache import (
    PREFETCHED,
    Link,
    Loader,
    MemoryRowCache,
    Row,
    RowCache,
    attach,
    cache_of,
    record_eviction,
)
from tidings.posts.facts import MEMO
from tidings.posts.models import Post
from tidings.posts.repository import PostRepository
from tidings.settings import Settings

POST = "post"
PROFILE = "profile.v2"  # v2: with the role (the access-token check reads it)
PROFILE_COLUMNS = ("id", "username", "display_name", "avatar_url", "suspended", "role")
_POST_TIMES = ("created_at", "edited_at", "deleted_at")
_REFS = ("share_of_id", "quote_of_id")  # the posts a post names (a share's, a quote's)


class CachedPost:
    """A post row from the row cache, read-only, with plain attributes. Rendering reads about
    thirty attributes a post; on an ORM instance each read goes through an instrumented
    descriptor (5.6 % of a warm feed page's API CPU, with the objects' construction 2.3 %
    more). Never added to a session: writes load the row into the session first."""

    id: int
    author_id: int
    kind: str
    text: str
    visibility: str
    share_of_id: int | None
    quote_of_id: int | None
    media: list[dict[str, Any]]
    links: list[str]
    has_media: bool
    like_count: int
    share_count: int
    comment_count: int
    quote_count: int
    version: int
    created_at: datetime
    edited_at: datetime | None
    deleted_at: datetime | None

    def __init__(self, row: Row) -> None:
        for name in _POST_TIMES:
            if isinstance(row.get(name), str):
                row[name] = datetime.fromisoformat(row[name])
        self.__dict__.update(row)


class CachedProfile:
    """An author profile from the row cache (:data:`PROFILE_COLUMNS`), as :class:`CachedPost`."""

    id: int
    username: str
    display_name: str
    avatar_url: str | None
    suspended: bool
    role: str

    def __init__(self, row: Row) -> None:
        self.__dict__.update(row)


PostView = Post | CachedPost  # what rendering reads: a session's row or a cached one
AuthorView = User | CachedProfile


PageRow = tuple[int, int, int | None, int | None]  # id, author_id, share_of_id, quote_of_id


async def page_bodies(session: AsyncSession, rows: Sequence[PageRow]) -> list[PostView]:
    """The posts of a page, in order, from the row cache: with the posts they share or quote
    and every author, in one round trip (:func:`prefetch_linked`); those extra rows are kept
    for this unit of work, so rendering the page (:func:`tidings.posts.views.load_context`)
    finds them without another. Needs a row cache."""
    posts, _targets, _authors = await prefetch_linked(session, [row[0] for row in rows])
    return [posts[row[0]] for row in rows if row[0] in posts]


async def prefetch_linked(
    session: AsyncSession, ids: Iterable[int]
) -> tuple[dict[int, PostView], dict[int, PostView], dict[int, CachedProfile]]:
    """The posts ``ids`` that exist, the posts they share or quote, and the profiles of all
    their authors, into this unit of work's memo: one round trip when they are cached
    (:meth:`tidings.core.cache.RowCache.get_linked`). Needs a row cache."""
    cache = cache_of(session)
    assert cache is not None
    memo = _prefetched(session)
    wanted = set(ids)
    new = wanted - memo[POST].keys()
    if new:
        repo = PostRepository(session)
        link = Link(POST, repo.post_rows, _REFS, "author_id", PROFILE, _profile_loader(repo))
        asked, referenced, owners = await cache.get_linked(link, new)
        for pid, row in {**referenced, **asked}.items():
            if pid not in memo[POST]:  # what this unit of work read first stays
                memo[POST][pid] = CachedPost(row)
        for uid, row in owners.items():
            if uid not in memo[PROFILE]:
                memo[PROFILE][uid] = CachedProfile(row)
    posts = {pid: memo[POST][pid] for pid in wanted if pid in memo[POST]}
    refs = {ref for post in posts.values() for ref in (post.share_of_id, post.quote_of_id) if ref}
    targets, _ = await prefetch(session, refs)  # in the memo by now: no round trip
    authors = {post.author_id for post in (*posts.values(), *targets.values())}
    _, profiles = await prefetch(session, (), authors)
    return posts, targets, profiles


async def prefetch(
    session: AsyncSession, posts: Iterable[int], profiles: Iterable[int] = ()
) -> tuple[dict[int, PostView], dict[int, CachedProfile]]:
    """Posts and profiles into this unit of work's memo, from the row cache in one read (what
    the memo holds already is not read again); returns every asked post and profile that
    exists. Rendering (:func:`tidings.posts.views.load_context`) then finds them without a
    round trip. Needs a row cache."""
    cache = cache_of(session)
    assert cache is not None
    memo = _prefetched(session)
    wanted = set(posts)
    wanted_profiles = set(profiles)
    new_posts = wanted - memo[POST].keys()
    new_profiles = wanted_profiles - memo[PROFILE].keys()
    if new_posts or new_profiles:
        repo = PostRepository(session)
        found_posts, found_profiles = await cache.get_groups(
            [(POST, new_posts, repo.post_rows), (PROFILE, new_profiles, _profile_loader(repo))]
        )
        memo[POST].update((pid, CachedPost(row)) for pid, row in found_posts.items())
        memo[PROFILE].update((uid, CachedProfile(row)) for uid, row in found_profiles.items())
    return (
        {pid: memo[POST][pid] for pid in wanted if pid in memo[POST]},
        {uid: memo[PROFILE][uid] for uid in wanted_profiles if uid in memo[PROFILE]},
    )


def _profile_loader(repo: PostRepository) -> Loader:
    """The cached profile columns of some users, from the database."""

    async def load(missing: list[int]) -> dict[int, Row]:
        return await repo.profile_rows(missing, PROFILE_COLUMNS)

    return load


def _prefetched(session: AsyncSession | Session) -> dict[str, dict[int, Any]]:
    memo: dict[str, dict[int, Any]] = session.info.setdefault(PREFETCHED, {POST: {}, PROFILE: {}})
    return memo


async def posts_by_ids(session: AsyncSession, ids: Iterable[int]) -> dict[int, PostView]:
    """Posts by id: through this unit of work's memo and the row cache (:func:`prefetch`);
    without a cache, from the database (on the driver: no ORM instances, no identity map)."""
    wanted = set(ids)
    if cache_of(session) is not None:
        return (await prefetch(session, wanted))[0]
    rows = await PostRepository(session).post_rows(list(wanted)) if wanted else {}
    return {row_id: CachedPost(row) for row_id, row in rows.items()}


async def profiles_by_ids(session: AsyncSession, ids: Iterable[int]) -> dict[int, AuthorView]:
    """Author profiles by id, as :func:`posts_by_ids`."""
    wanted = set(ids)
    if cache_of(session) is not None:
        return dict((await prefetch(session, (), wanted))[1])
    rows = await PostRepository(session).profile_rows(wanted, PROFILE_COLUMNS) if wanted else {}
    return {row_id: CachedProfile(row) for row_id, row in rows.items()}


async def plain_posts(
    session: AsyncSession, stmt: Select[Any], params: dict[str, Any]
) -> list[PostView]:
    """The posts a statement selecting post entities returns, whole rows on the driver as
    :class:`CachedPost` (the pages served without a row cache)."""
    return [CachedPost(row) for row in await PostRepository(session).rows_of(stmt, params)]


def _record_changes(session: Session, _flush: UOWTransaction) -> None:
    """After each flush: the posts and users it changed or deleted are evicted at commit."""
    info: dict[Any, Any] = session.info
    info.pop(PREFETCHED, None)  # a write in this unit of work: nothing prefetched is current
    info.pop(MEMO, None)  # nor any relation read
    changed = [*session.dirty, *session.deleted]
    record_eviction(info, POST, (obj.id for obj in changed if isinstance(obj, Post)))
    record_eviction(info, PROFILE, (obj.id for obj in changed if isinstance(obj, User)))


def install_listeners() -> None:
    """Idempotent; called when a row cache is attached."""
    if not event.contains(Session, "after_flush", _record_changes):
        event.listen(Session, "after_flush", _record_changes)


def open_row_cache(
    settings: Settings, redis: Redis | None, sessions: async_sessionmaker[AsyncSession]
) -> RowCache:
    """The row cache on ``redis`` (or in this process's memory when None), attached to every
    session of ``sessions``."""
    ttl = settings.cache_ttl_seconds
    cache = (
        RowCache(redis, prefix=settings.cache_key_prefix, ttl_seconds=ttl)
        if redis is not None
        else MemoryRowCache(ttl_seconds=ttl, max_entries=settings.cache_max_entries)
    )
    attach(sessions, cache)
    install_listeners()
    return cache
