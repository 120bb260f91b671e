"""A stand-in for the database behind a row cache (tidings.core.cache)."""

from __future__ import annotations

import asyncio

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
