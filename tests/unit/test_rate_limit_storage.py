"""The in-memory rate-limit storage sweeps expired counters at most once a second, not once per
request, and still forgets them (limits' private hook is checked to exist)."""

from __future__ import annotations

import asyncio

import pytest
from limits import parse
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import SlidingWindowCounterRateLimiter

from tidings.ratelimit import limiter as limiter_module
from tidings.ratelimit.limiter import SweepingMemoryStorage


def test_the_library_still_has_the_hook_we_override() -> None:
    assert callable(getattr(MemoryStorage, "_MemoryStorage__schedule_expiry", None))
    assert callable(getattr(MemoryStorage, "_MemoryStorage__expire_events", None))


async def test_hits_sweep_at_most_once_per_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    sweeps = {"library": 0, "ours": 0}
    original = MemoryStorage._MemoryStorage__expire_events  # type: ignore[attr-defined]

    async def counting(self: MemoryStorage) -> None:
        sweeps["library" if type(self) is MemoryStorage else "ours"] += 1
        await original(self)

    monkeypatch.setattr(MemoryStorage, "_MemoryStorage__expire_events", counting)
    monkeypatch.setattr(limiter_module, "SWEEP_SECONDS", 3600.0)  # however slow the machine
    item = parse("1000/minute")
    for storage in (MemoryStorage(), SweepingMemoryStorage()):
        limiter = SlidingWindowCounterRateLimiter(storage)
        for i in range(200):
            assert await limiter.hit(item, "test", f"client-{i % 50}")
            await asyncio.sleep(0)  # let a scheduled sweep run, as between requests
    assert sweeps["library"] > 50  # the library's own: about one walk per hit
    assert sweeps["ours"] == 1


async def test_expired_counters_are_still_swept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limiter_module, "SWEEP_SECONDS", 0.0)
    storage = SweepingMemoryStorage()
    await storage.incr("gone", expiry=0.01)
    await storage.incr("kept", expiry=60)
    await asyncio.sleep(0.05)
    await storage.incr("kept", expiry=60)  # schedules a sweep
    for _ in range(20):
        await asyncio.sleep(0.01)
        if "gone" not in storage.storage:
            break
    assert "gone" not in storage.storage
    assert storage.storage["kept"] == 2
