"""A stand-in for the database behind a row cache (tidings.core.cache)."""

from __future__ import annotations

import asyncio

from tidings.core.cache import Row


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
