"""A stand-in for the database behind a row cache (tidings.core.cache)."""

from __future__ import annotations

import asyncio
from typing import Any

from tidings.core.cache import Row, RowCache


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
