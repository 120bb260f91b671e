"""The home feed from Redis timelines (fan-out on write, hybrid merge, hibernation, pull fallback)
against the pull query, on real Redis and SQLite / PostgreSQL.

Two apps share one database: ``feeds`` with ``TIDINGS_FEED_STORE=redis`` (it runs the relay and
the fan-out consumer) and ``pull`` with the embedded default (no Redis, no relay). Every check
compares the pages the two serve for the same viewer and cursor.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import pytest
from redis.asyncio import Redis
from sqlalchemy import func, select

from tests.conftest import make_settings
from tests.support.api import DEFAULT_PASSWORD, SignedIn, sign_up
from tests.support.waiting import eventually
from tidings.accounts.erasure import erase_pending
from tidings.accounts.models import User
from tidings.app import create_app
from tidings.core.cache import cache_of
from tidings.core.container import Container
from tidings.events.models import OutboxMessage, ProcessedEvent
from tidings.feeds.fanout import CONSUMER, HANDLERS
from tidings.feeds.store import COMPLETE, store_of

REDIS_URL = "redis://127.0.0.1:6379/0"


@dataclass
class Apps:
    feeds: httpx2.AsyncClient
    pull: httpx2.AsyncClient
    container: Container
    redis: Redis
    prefix: str

    def timeline(self, user: SignedIn) -> str:
        return f"{self.prefix}tl:{user.user_id}"

    async def settled(self) -> None:
        """The fan-out consumer has applied every committed event. (Not ``published_at``: with
        several consumers finishing at once, the relay may set it only at the redelivery
        timeout.)"""

        async def drained() -> bool:
            applied = select(ProcessedEvent.event_id).where(ProcessedEvent.consumer == CONSUMER)
            stmt = select(func.count()).where(
                OutboxMessage.event_type.in_(list(HANDLERS)), OutboxMessage.id.not_in(applied)
            )
            async with self.container.db.unit_of_work(write=False) as session:
                return int((await session.execute(stmt)).scalar_one()) == 0

        await eventually(drained, within=15)


async def _client(settings: Any) -> tuple[httpx2.AsyncClient, Container, Any, Any]:
    container = Container.build(settings)
    app = create_app(settings, container)
    lifespan = app.router.lifespan_context(app)
    await lifespan.__aenter__()
    client = httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://t")
    return client, container, lifespan, app


@pytest.fixture
def feed_overrides() -> dict[str, Any]:
    return {}


@pytest.fixture
async def apps(
    tmp_path: Path, database_url: str, feed_overrides: dict[str, Any]
) -> AsyncIterator[Apps]:
    prefix = f"test:feeds:{secrets.token_hex(6)}:"
    feed_settings = make_settings(
        tmp_path / "data",
        database_url,
        feed_store="redis",
        feed_key_prefix=prefix,
        relay_poll_seconds=0.05,
        consumer_retry_base_seconds=0.01,
        cache_key_prefix=f"{prefix}cache:",
        # not the in-memory cache (`auto` on SQLite): the pull app beside it writes to the same
        # database, which core.writers refuses; the redis cache is tested where overridden
        **{"row_cache": "none", **feed_overrides},
    )
    pull_settings = make_settings(  # database only: no row cache of its own to go stale
        tmp_path / "data", database_url, relay_in_api=False, row_cache="none"
    )
    redis = Redis.from_url(REDIS_URL, decode_responses=True)
    feeds, container, feeds_life, _ = await _client(feed_settings)
    pull, _pull_container, pull_life, _ = await _client(pull_settings)
    try:
        yield Apps(feeds, pull, container, redis, prefix)
    finally:
        for client, life in ((feeds, feeds_life), (pull, pull_life)):
            await client.aclose()
            await life.__aexit__(None, None, None)
        keys = [key async for key in redis.scan_iter(match=f"{prefix}*", count=1000)]
        if keys:
            await redis.delete(*keys)
        await redis.aclose()


# --- helpers -----------------------------------------------------------------------------------


async def _ok(client: httpx2.AsyncClient, method: str, path: str, user: SignedIn, **kw: Any) -> Any:
    response = await client.request(method, path, headers=user.headers, **kw)
    assert response.status_code in (200, 201, 202, 204), response.text
    return response.json() if response.content else None


async def _post(client: httpx2.AsyncClient, user: SignedIn, text: str, **extra: Any) -> str:
    body = await _ok(client, "POST", "/api/v1/posts", user, json={"text": text, **extra})
    return str(body["id"])


async def _walk(
    client: httpx2.AsyncClient, user: SignedIn, limit: int, **params: Any
) -> list[tuple[list[str], str | None]]:
    """Every page of the feed: (ids, next cursor)."""
    pages: list[tuple[list[str], str | None]] = []
    cursor: str | None = None
    for _ in range(200):
        query: dict[str, Any] = {"limit": limit, **params}
        if cursor:
            query["cursor"] = cursor
        response = await client.get("/api/v1/feed", params=query, headers=user.headers)
        assert response.status_code == 200, response.text
        body = response.json()
        cursor = body["next_cursor"]
        pages.append(([item["id"] for item in body["data"]], cursor))
        if cursor is None:
            return pages
    raise AssertionError("the walk does not end")


async def _same_feed(apps: Apps, user: SignedIn, limit: int = 7, **params: Any) -> list[str]:
    """Both apps serve identical pages (ids and cursors); returns the ids in order."""
    stored = await _walk(apps.feeds, user, limit, **params)
    pulled = await _walk(apps.pull, user, limit, **params)
    assert stored == pulled
    return [post_id for ids, _ in stored for post_id in ids]


async def _members(apps: Apps, user: SignedIn) -> set[str]:
    return _ids(await apps.redis.zrange(apps.timeline(user), 0, -1))


def _ids(members: Any) -> set[str]:
    """Post ids among sorted-set members (without the sentinels and the id-0 floor mark)."""
    return {str(int(m)) for m in members if m.isdigit() and int(m) > 0}


# --- tests -------------------------------------------------------------------------------------


# with the Redis row cache, the store's candidates are filtered on cached rows and relations
# (tidings.feeds.rules) instead of by a query: the same pages either way
ROW_CACHE = {"row_cache": "redis"}


@pytest.mark.parametrize("feed_overrides", [{"feed_cap": 20}, {"feed_cap": 20, **ROW_CACHE}])
async def test_store_and_pull_serve_the_same_pages(apps: Apps) -> None:
    alice = await sign_up(apps.feeds, "alice")
    bob = await sign_up(apps.feeds, "bob")
    carol = await sign_up(apps.feeds, "carol")
    dave = await sign_up(apps.feeds, "dave")
    for name in ("bob", "carol", "dave"):
        await _ok(apps.feeds, "PUT", f"/api/v1/users/{name}/follow", alice)
    assert await _same_feed(apps, alice) == []  # builds alice's (empty) timeline
    assert await apps.redis.zscore(apps.timeline(alice), COMPLETE) is not None

    media = [{"url": "https://img.example/a.png", "type": "image", "alt_text": "a"}]
    posted: list[str] = []
    for i in range(12):  # 48 posts and shares: more than the cap of 20
        posted.append(await _post(apps.feeds, bob, f"bob {i}"))
        posted.append(await _post(apps.feeds, carol, f"carol {i}", media=media))
        posted.append(await _post(apps.feeds, dave, f"dave {i}", visibility="followers"))
        await _post(apps.feeds, dave, f"dave private {i}", visibility="private")
        share = await _ok(apps.feeds, "POST", f"/api/v1/posts/{posted[-3]}/share", carol)
        posted.append(str(share["share_id"]))
    posted.append(await _post(apps.feeds, alice, "mine", visibility="private"))
    await apps.settled()

    stored = await _members(apps, alice)
    assert len(stored) == 20  # fanned out, trimmed to the cap
    assert stored <= set(posted)
    expected = sorted(posted, key=int, reverse=True)
    for limit in (1, 7, 20, 100):
        assert await _same_feed(apps, alice, limit) == expected  # past the window: pull
    with_media = await _same_feed(apps, alice, 5, has_media="true")
    assert with_media == [p for p in expected if p in set(posted[1::4])]  # carol's posts
    assert await _same_feed(apps, alice, 6, include_shares="false") == [
        p for p in expected if p not in set(posted[3::4])
    ]
    assert await _same_feed(apps, bob, 9)  # bob's own feed from his timeline


@pytest.mark.parametrize(
    "feed_overrides", [{"fanout_threshold": 1}, {"fanout_threshold": 1, **ROW_CACHE}]
)
async def test_authors_over_the_threshold_are_merged_at_read_time(apps: Apps) -> None:
    star = await sign_up(apps.feeds, "star")
    fan = await sign_up(apps.feeds, "fan")
    other = await sign_up(apps.feeds, "other")
    await _ok(apps.feeds, "PUT", "/api/v1/users/star/follow", fan)
    await _ok(apps.feeds, "PUT", "/api/v1/users/star/follow", other)
    await _ok(apps.feeds, "PUT", "/api/v1/users/other/follow", fan)
    early = await _post(apps.feeds, star, "before the timeline")
    await apps.settled()
    assert await _same_feed(apps, fan) == [early]  # built from the database
    ids = []
    for i in range(5):
        ids.append(await _post(apps.feeds, star, f"star {i}"))
        ids.append(await _post(apps.feeds, other, f"other {i}"))
    await apps.settled()

    # star has 2 followers > threshold 1: not fanned out, kept in star's list and merged
    assert not (set(ids[0::2]) & await _members(apps, fan))
    assert set(ids[1::2]) <= await _members(apps, fan)
    author_list = await apps.redis.zrange(f"{apps.prefix}au:{star.user_id}", 0, -1)
    assert _ids(author_list) >= set(ids[0::2])
    feed = await _same_feed(apps, fan, 3)
    assert feed == sorted([*ids, early], key=int, reverse=True)

    # an author list lost (eviction, restart) is rebuilt on the next read
    await apps.redis.delete(f"{apps.prefix}au:{star.user_id}")
    assert await _same_feed(apps, fan, 4) == feed
    # unfollowing the star removes the merged posts at once
    await _ok(apps.feeds, "DELETE", "/api/v1/users/star/follow", fan)
    assert await _same_feed(apps, fan, 4) == sorted(ids[1::2], key=int, reverse=True)


async def test_inactive_users_are_skipped_and_rebuilt_on_read(apps: Apps) -> None:
    sleepy = await sign_up(apps.feeds, "sleepy")
    writer = await sign_up(apps.feeds, "writer")
    await _ok(apps.feeds, "PUT", "/api/v1/users/writer/follow", sleepy)
    first = await _post(apps.feeds, writer, "one")
    assert await _same_feed(apps, sleepy) == [first]
    ttl = await apps.redis.ttl(apps.timeline(sleepy))
    assert 29 * 86_400 < ttl <= 30 * 86_400  # renewed on every read

    await apps.redis.delete(apps.timeline(sleepy))  # as if 30 days passed without a read
    second = await _post(apps.feeds, writer, "two")
    await apps.settled()
    assert not await apps.redis.exists(apps.timeline(sleepy))  # fan-out skipped them
    # the next read is served by the pull query (never empty) and rebuilds the timeline
    assert await _same_feed(apps, sleepy) == [second, first]
    assert await _members(apps, sleepy) == {first, second}
    assert await apps.redis.zscore(apps.timeline(sleepy), COMPLETE) is not None


@pytest.mark.parametrize("feed_overrides", [{}, ROW_CACHE])
async def test_follow_merges_and_removals_apply_at_once(apps: Apps) -> None:
    alice = await sign_up(apps.feeds, "alice")
    bob = await sign_up(apps.feeds, "bob")
    carol = await sign_up(apps.feeds, "carol")
    b1 = await _post(apps.feeds, bob, "bob one")
    c1 = await _post(apps.feeds, carol, "carol one")
    a1 = await _post(apps.feeds, alice, "alice one")
    assert await _same_feed(apps, alice) == [a1]  # timeline built
    await _ok(apps.feeds, "PUT", "/api/v1/users/bob/follow", alice)
    await _ok(apps.feeds, "PUT", "/api/v1/users/carol/follow", alice)
    await apps.settled()
    assert {b1, c1} <= await _members(apps, alice)  # the follows merged their recent posts
    bs = str((await _ok(apps.feeds, "POST", f"/api/v1/posts/{c1}/share", bob))["share_id"])
    b2 = await _post(apps.feeds, bob, "bob two")
    await apps.settled()
    assert await _same_feed(apps, alice) == [b2, bs, a1, c1, b1]

    # no waiting below: the read path filters every candidate with the pull query's rules
    await _ok(apps.feeds, "PUT", "/api/v1/users/carol/mute", alice)
    assert await _same_feed(apps, alice) == [b2, a1, b1]
    await _ok(apps.feeds, "DELETE", "/api/v1/users/carol/mute", alice)
    assert await _same_feed(apps, alice) == [b2, bs, a1, c1, b1]
    await _ok(apps.feeds, "PUT", "/api/v1/users/alice/block", carol)
    assert await _same_feed(apps, alice) == [b2, a1, b1]
    await _ok(apps.feeds, "DELETE", "/api/v1/users/alice/block", carol)
    assert await _same_feed(apps, alice) == [b2, bs, a1, b1]
    await _ok(apps.feeds, "DELETE", f"/api/v1/posts/{b2}", bob)
    await _ok(apps.feeds, "PATCH", f"/api/v1/posts/{b1}", bob, json={"visibility": "private"})
    assert await _same_feed(apps, alice) == [bs, a1]
    await _ok(apps.feeds, "DELETE", "/api/v1/users/bob/follow", alice)
    assert await _same_feed(apps, alice) == [a1]
    # a visibility upgrade fans the post out again (to the timelines that reach that far back)
    await _ok(apps.feeds, "PUT", "/api/v1/users/bob/follow", alice)
    await _ok(apps.feeds, "PATCH", f"/api/v1/posts/{b1}", bob, json={"visibility": "public"})
    await apps.settled()
    assert await _same_feed(apps, alice) == [bs, a1, b1]


@pytest.mark.parametrize(
    "feed_overrides",
    [
        {"redis_url": "redis://127.0.0.1:1/0", "consumer_max_attempts": 1},
        {"redis_url": "redis://127.0.0.1:1/0", "consumer_max_attempts": 1, "row_cache": "redis"},
    ],
)
async def test_redis_down_serves_the_pull_query(apps: Apps) -> None:
    alice = await sign_up(apps.feeds, "alice")
    bob = await sign_up(apps.feeds, "bob")
    await _ok(apps.feeds, "PUT", "/api/v1/users/bob/follow", alice)
    posts = [await _post(apps.feeds, bob, f"bob {i}") for i in range(5)]
    store = store_of(apps.container.db.sessions())
    assert store is not None
    for _ in range(2):  # the first read meets the dead Redis, the next skip it
        assert await _same_feed(apps, alice, 2) == posts[::-1]
        assert not store.available


async def _same_bodies(apps: Apps, user: SignedIn) -> list[dict[str, Any]]:
    """The feed app (Redis timelines + row cache) and the pull app (database only) serve the
    very same bodies: texts, authors, counters, viewer state."""
    stored = await _ok(apps.feeds, "GET", "/api/v1/feed?limit=50", user)
    pulled = await _ok(apps.pull, "GET", "/api/v1/feed?limit=50", user)
    assert stored["data"] == pulled["data"]
    for path in ("/api/v1/users/bob/posts", "/api/v1/users/carol/posts?limit=1"):
        # user timelines: ids from the database, bodies from the cache
        timeline = await _ok(apps.feeds, "GET", path, user)
        assert timeline == await _ok(apps.pull, "GET", path, user)
    data: list[dict[str, Any]] = stored["data"]
    return data


@pytest.mark.parametrize("feed_overrides", [ROW_CACHE])
async def test_row_cache_bodies_are_fresh_after_every_write(apps: Apps) -> None:
    alice = await sign_up(apps.feeds, "alice")
    bob = await sign_up(apps.feeds, "bob")
    carol = await sign_up(apps.feeds, "carol")
    for name in ("bob", "carol"):
        await _ok(apps.feeds, "PUT", f"/api/v1/users/{name}/follow", alice)
    p1 = await _post(apps.feeds, bob, "first")
    p2 = await _post(  # JSON columns through the cache too
        apps.feeds,
        bob,
        "second",
        links=["https://example.com/a"],
        media=[{"url": "https://example.com/i.png", "type": "image", "alt_text": "a cat"}],
    )
    await _ok(apps.feeds, "POST", f"/api/v1/posts/{p1}/share", carol)
    await apps.settled()
    page = await _same_bodies(apps, alice)
    await _same_bodies(apps, alice)  # now from the cache
    assert [item["text"] for item in page] == ["", "second", "first"]
    cached = [key async for key in apps.redis.scan_iter(match=f"{apps.prefix}cache:*")]
    assert any(":post:" in key for key in cached)
    assert any(":profile.v2:" in key for key in cached)

    await _ok(apps.feeds, "PATCH", f"/api/v1/posts/{p1}", bob, json={"text": "first, edited"})
    page = await _same_bodies(apps, alice)
    assert page[0]["shared_post"]["text"] == "first, edited"  # the share shows the edit
    await _ok(apps.feeds, "PUT", f"/api/v1/posts/{p1}/like", alice)
    await _ok(apps.feeds, "PUT", f"/api/v1/posts/{p2}/like", carol)
    page = await _same_bodies(apps, alice)
    assert page[0]["shared_post"]["counts"]["likes"] == 1
    assert page[0]["shared_post"]["viewer"]["liked"] is True
    assert page[1]["counts"]["likes"] == 1
    # liking a share likes the shared post (read through the cache on the way)
    liked = await _ok(apps.feeds, "PUT", f"/api/v1/posts/{page[0]['id']}/like", bob)
    assert liked == {"liked": True, "likes": 2}
    await _ok(apps.feeds, "POST", f"/api/v1/posts/{page[0]['id']}/share", bob)
    await apps.settled()
    page = await _same_bodies(apps, alice)
    assert page[1]["shared_post"]["counts"]["likes"] == 2
    assert page[1]["shared_post"]["counts"]["shares"] == 2
    await _ok(apps.feeds, "DELETE", f"/api/v1/posts/{page[1]['id']}/share", bob)
    page = await _same_bodies(apps, alice)
    assert [item["text"] for item in page] == ["", "second", "first, edited"]
    await _ok(apps.feeds, "PATCH", "/api/v1/me", bob, json={"display_name": "Robert"})
    page = await _same_bodies(apps, alice)
    assert {item["author"]["display_name"] for item in page[1:]} == {"Robert"}
    await _ok(apps.feeds, "DELETE", f"/api/v1/posts/{p2}", bob)
    await apps.settled()
    page = await _same_bodies(apps, alice)
    assert p2 not in [item["id"] for item in page]


@pytest.mark.parametrize("feed_overrides", [ROW_CACHE])
async def test_cached_rules_follow_every_write_that_changes_a_page(apps: Apps) -> None:
    """Each page is read twice (the second from warm caches) and compared with the pull
    query's after every write the cached rules depend on, once its tombstones expired:
    suspension, the shared post's author blocked, muted or no longer followed, the shared
    post's visibility, an unshare (a row deleted with SQL), a deleted original, and the
    viewer's likes."""
    from tests.support.api import login, make_admin

    await make_admin(apps.container, "warden")
    root = await login(apps.feeds, "warden")
    alice = await sign_up(apps.feeds, "alice")
    bob = await sign_up(apps.feeds, "bob")
    carol = await sign_up(apps.feeds, "carol")
    dave = await sign_up(apps.feeds, "dave")  # not followed by alice: seen through shares
    for name in ("bob", "carol"):
        await _ok(apps.feeds, "PUT", f"/api/v1/users/{name}/follow", alice)
    assert await _same_feed(apps, alice) == []
    d1 = await _post(apps.feeds, dave, "dave public")
    c1 = await _post(apps.feeds, carol, "carol, soon for followers only")
    b1 = await _post(apps.feeds, bob, "bob one")
    s_dave = str((await _ok(apps.feeds, "POST", f"/api/v1/posts/{d1}/share", bob))["share_id"])
    s_carol = str((await _ok(apps.feeds, "POST", f"/api/v1/posts/{c1}/share", bob))["share_id"])
    await _ok(apps.feeds, "PATCH", f"/api/v1/posts/{c1}", carol, json={"visibility": "followers"})
    await apps.settled()

    # short tombstones, waited out before each read: every write must itself end the facts it
    # changes (a hash still closed by the write before would hide a missing eviction)
    cache = cache_of(apps.container.db.sessions())
    assert cache is not None
    cache.tombstone_ms = 50

    async def page() -> list[str]:
        await asyncio.sleep(0.1)
        first = await _same_feed(apps, alice)
        assert await _same_feed(apps, alice) == first  # warm
        return first

    everything = [s_carol, s_dave, b1, c1]
    assert await page() == everything
    admin = "/api/v1/admin/users"
    await _ok(apps.feeds, "PATCH", f"{admin}/dave", root, json={"suspended": True})
    assert await page() == [s_carol, b1, c1]
    await _ok(apps.feeds, "PATCH", f"{admin}/dave", root, json={"suspended": False})
    assert await page() == everything
    dave = await login(apps.feeds, "dave")  # suspension signed dave out
    await _ok(apps.feeds, "PUT", "/api/v1/users/alice/block", dave)  # the shared author blocks
    assert await page() == [s_carol, b1, c1]
    await _ok(apps.feeds, "DELETE", "/api/v1/users/alice/block", dave)
    await _ok(apps.feeds, "PUT", "/api/v1/users/dave/mute", alice)
    assert await page() == [s_carol, b1, c1]
    await _ok(apps.feeds, "DELETE", "/api/v1/users/dave/mute", alice)
    assert await page() == everything
    # carol's post is for her followers: its share shows only while alice follows carol
    await _ok(apps.feeds, "DELETE", "/api/v1/users/carol/follow", alice)
    assert await page() == [s_dave, b1]
    await _ok(apps.feeds, "PUT", "/api/v1/users/carol/follow", alice)
    assert await page() == everything
    await _ok(apps.feeds, "PATCH", f"/api/v1/posts/{c1}", carol, json={"visibility": "private"})
    assert await page() == [s_dave, b1]
    await _ok(apps.feeds, "PATCH", f"/api/v1/posts/{c1}", carol, json={"visibility": "followers"})
    assert await page() == everything
    await _ok(apps.feeds, "PUT", f"/api/v1/posts/{b1}/like", alice)
    body = await _ok(apps.feeds, "GET", "/api/v1/feed", alice)
    assert [item["viewer"]["liked"] for item in body["data"]] == [False, False, True, False]
    await _ok(apps.feeds, "DELETE", f"/api/v1/posts/{b1}/like", alice)
    body = await _ok(apps.feeds, "GET", "/api/v1/feed", alice)
    assert not any(item["viewer"]["liked"] for item in body["data"])
    await _ok(apps.feeds, "DELETE", f"/api/v1/posts/{d1}/share", bob)  # the row is gone
    assert await page() == [s_carol, b1, c1]
    await _ok(apps.feeds, "DELETE", f"/api/v1/posts/{c1}", carol)  # its shares go with it
    assert await page() == [b1]


@pytest.mark.parametrize("feed_overrides", [ROW_CACHE])
async def test_user_timeline_from_cached_relations_follows_blocks_and_follows(apps: Apps) -> None:
    """With the row cache, a user's timeline takes the viewer's relationship with the user from
    the cached relations (a block by the user answers 404, a block by the viewer an empty page,
    a follow shows followers-only posts): after each write, once its tombstones expired, read
    twice (the second warm), it answers what the database-only app answers."""
    alice = await sign_up(apps.feeds, "alice")
    bob = await sign_up(apps.feeds, "bob")
    public = await _post(apps.feeds, bob, "bob public")
    followers = await _post(apps.feeds, bob, "bob for followers", visibility="followers")
    cache = cache_of(apps.container.db.sessions())
    assert cache is not None
    cache.tombstone_ms = 50

    async def timeline() -> tuple[int, list[str]]:
        await asyncio.sleep(0.1)
        answers = []
        for client in (apps.feeds, apps.feeds, apps.pull):
            response = await client.get("/api/v1/users/bob/posts", headers=alice.headers)
            ids = [item["id"] for item in response.json().get("data", [])]
            answers.append((response.status_code, ids))
        assert answers[0] == answers[1] == answers[2], answers
        return answers[0]

    assert await timeline() == (200, [public])
    await _ok(apps.feeds, "PUT", "/api/v1/users/bob/follow", alice)
    assert await timeline() == (200, [followers, public])
    await _ok(apps.feeds, "PUT", "/api/v1/users/alice/block", bob)  # ends alice's follow too
    assert await timeline() == (404, [])
    await _ok(apps.feeds, "DELETE", "/api/v1/users/alice/block", bob)
    assert await timeline() == (200, [public])
    await _ok(apps.feeds, "PUT", "/api/v1/users/bob/block", alice)
    assert await timeline() == (200, [])
    await _ok(apps.feeds, "DELETE", "/api/v1/users/bob/block", alice)
    assert await timeline() == (200, [public])


@pytest.mark.parametrize("feed_overrides", [{}, ROW_CACHE])
async def test_a_deleted_account_leaves_every_feed(apps: Apps) -> None:
    alice = await sign_up(apps.feeds, "alice")
    bob = await sign_up(apps.feeds, "bob")
    await _ok(apps.feeds, "PUT", "/api/v1/users/bob/follow", alice)
    await _ok(apps.feeds, "PUT", "/api/v1/users/alice/follow", bob)
    assert await _same_feed(apps, alice) == []
    assert await _same_feed(apps, bob) == []
    bobs = [await _post(apps.feeds, bob, f"bob {i}") for i in range(3)]
    alices = await _post(apps.feeds, alice, "alice's")
    await apps.settled()
    assert set(bobs) <= await _members(apps, alice)
    assert await _same_feed(apps, alice) == [alices, *reversed(bobs)]
    assert await _members(apps, bob) == {*bobs, alices}

    await _ok(apps.feeds, "DELETE", "/api/v1/me", bob, json={"password": DEFAULT_PASSWORD})
    await apps.settled()
    await erase_pending(apps.container.db, batch=2, max_batches=50)  # (or the app's own loop)
    async with apps.container.db.unit_of_work(write=False) as session:
        erased = await session.get(User, int(bob.user_id))
        assert erased is not None
        assert erased.erased_at is not None
    await apps.settled()
    assert not await apps.redis.exists(apps.timeline(bob))  # the account's own timeline went
    assert await _same_feed(apps, alice) == [alices]
