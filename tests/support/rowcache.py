"""A stand-in for the database behind a row cache (tidings.core.cache)."""

from __future__ import annotations

import asyncio
from typing import Any

from tidings.core.cache import Link, Row, RowCache


class Loader:
    """Records which ids each call asked for; answers the rows it has (optionally slowly)."""

    def __init__(self, rows: dict[int, Row], delay: float = 0.0) -> None:
        self.rows = rows
        self.delay = delay
        self.calls: list[list[int]] = []

    async def __call__(self, ids: list[int]) -> dict[int, Row]:
        self.calls.append(ids)
        await asyncio.sleep(self.delay)
        return {i: self.rows[i] for i in ids if i in self.rows}


class FactLoader:
    """:class:`Loader` for facts (``RowCache.get_facts``): records the names each call asked
    for; answers the values it has (absent ones are 0 to the cache)."""

    def __init__(self, values: dict[str, int]) -> None:
        self.values = values
        self.calls: list[list[str]] = []

    async def __call__(self, names: list[str]) -> dict[str, int]:
        self.calls.append(list(names))
        return {name: self.values[name] for name in names if name in self.values}


async def drop_keys(redis: Any, prefix: str) -> None:
    """Delete every Redis key under ``prefix`` (a test's own namespace)."""
    keys = [key async for key in redis.scan_iter(match=f"{prefix}*", count=1000)]
    if keys:
        await redis.delete(*keys)


async def check_misses_load_once_then_hit(cache: RowCache) -> None:
    """The contract every row cache keeps: one batched load for the misses (missing rows are
    simply absent), then hits for what was loaded and a load for the new miss alone."""
    load = Loader({i: {"id": i, "text": f"row {i}"} for i in range(1, 6)})
    first = await cache.get_many("post", [1, 2, 3, 99], load)
    assert first == {i: {"id": i, "text": f"row {i}"} for i in (1, 2, 3)}  # 99 does not exist
    assert load.calls == [[1, 2, 3, 99]]
    again = await cache.get_many("post", [3, 2, 1, 4], load)
    assert again == {i: {"id": i, "text": f"row {i}"} for i in (1, 2, 3, 4)}
    assert load.calls[1:] == [[4]]  # only the new miss


# ids past 2**53 (as the id generator makes them): exact through Redis's Lua, not floats
BIG = 2**60


def linked_rows() -> tuple[dict[int, Row], dict[int, Row]]:
    """Posts 1..4 (plus BIG) and profiles: 1 shares 3, 2 quotes 4, 4 shares BIG + 5, whose
    text looks like a reference (it is not: inside a string every quote is escaped)."""
    posts: dict[int, Row] = {
        BIG + 1: {
            "id": BIG + 1,
            "author_id": BIG + 10,
            "share_of_id": BIG + 3,
            "quote_of_id": None,
        },
        BIG + 2: {
            "id": BIG + 2,
            "author_id": BIG + 11,
            "share_of_id": None,
            "quote_of_id": BIG + 4,
        },
        BIG + 3: {"id": BIG + 3, "author_id": BIG + 12, "share_of_id": None, "quote_of_id": None},
        BIG + 4: {
            "id": BIG + 4,
            "author_id": BIG + 13,
            "share_of_id": BIG + 5,
            "quote_of_id": None,
        },
        BIG + 5: {"id": BIG + 5, "author_id": BIG + 14, "share_of_id": None, "quote_of_id": None},
        BIG + 6: {
            "id": BIG + 6,
            "author_id": BIG + 10,
            "text": '","share_of_id":7,"author_id":8,"quote_of_id":9',
            "share_of_id": None,
            "quote_of_id": None,
        },
    }
    profiles = {uid: {"id": uid, "name": f"user {uid}"} for uid in range(BIG + 10, BIG + 15)}
    return posts, profiles


def post_link(posts: Loader, profiles: Loader) -> Link:
    """Posts naming posts (shares, quotes) and their authors' profiles, as the app links them."""
    return Link("post", posts, ("share_of_id", "quote_of_id"), "author_id", "profile", profiles)


async def check_linked(cache: RowCache) -> None:
    """``get_linked``: the asked rows, the rows they name (one level) and the owners of all
    of them; cold, the misses are loaded per kind; warm, nothing is loaded; a text that looks
    like a reference is not one."""
    posts, profiles = linked_rows()
    load_posts, load_profiles = Loader(posts), Loader(profiles)
    link = post_link(load_posts, load_profiles)
    asked = [BIG + 1, BIG + 2, BIG + 6, BIG + 99]  # BIG + 99 does not exist
    expected = (
        {i: posts[i] for i in (BIG + 1, BIG + 2, BIG + 6)},
        {i: posts[i] for i in (BIG + 3, BIG + 4)},  # one level: not BIG + 5
        {i: profiles[i] for i in (BIG + 10, BIG + 11, BIG + 12, BIG + 13)},
    )
    assert await cache.get_linked(link, asked) == expected
    assert sorted(load_posts.calls[0]) == sorted(asked)
    assert sorted(i for call in load_posts.calls[1:] for i in call) == [BIG + 3, BIG + 4]
    assert sorted(i for call in load_profiles.calls for i in call) == sorted(expected[2])
    load_posts.calls.clear()
    load_profiles.calls.clear()
    assert await cache.get_linked(link, asked) == expected
    assert load_posts.calls == [[BIG + 99]]  # warm: only the row that does not exist
    assert load_profiles.calls == []
    # a referenced row asked as well is both asked and referenced
    both = await cache.get_linked(link, [BIG + 1, BIG + 3])
    assert both == (
        {i: posts[i] for i in (BIG + 1, BIG + 3)},
        {BIG + 3: posts[BIG + 3]},
        {i: profiles[i] for i in (BIG + 10, BIG + 12)},
    )
    # a referenced row changed and evicted: the next read loads it again (never the old one)
    posts[BIG + 3] = {**posts[BIG + 3], "text": "edited"}
    await cache.evict([("post", BIG + 3)])
    for _ in range(2):  # the second read too: a tombstoned row is loaded, never filled
        _asked, referenced, _owners = await cache.get_linked(link, [BIG + 1])
        assert referenced[BIG + 3]["text"] == "edited"
    assert load_posts.calls[-2:] == [[BIG + 3], [BIG + 3]]


async def check_linked_without_redis(cache: RowCache) -> None:
    """``get_linked`` answers from the loaders alone when the cache cannot be read."""
    posts, profiles = linked_rows()
    link = post_link(Loader(posts), Loader(profiles))
    asked, referenced, owners = await cache.get_linked(link, [BIG + 2])
    assert asked == {BIG + 2: posts[BIG + 2]}
    assert referenced == {BIG + 4: posts[BIG + 4]}
    assert owners == {i: profiles[i] for i in (BIG + 11, BIG + 13)}
