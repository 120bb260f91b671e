"""The in-memory rate-limit storage sweeps expired counters at most once a second, not once per
request, and still forgets them (limits' private hook is checked to exist)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from limits import parse
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import SlidingWindowCounterRateLimiter

from tests.conftest import make_settings
from tidings.core.errors import RateLimited
from tidings.ratelimit import limiter as limiter_module
from tidings.ratelimit.limiter import RateLimiter, SweepingMemoryStorage


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


async def test_a_reset_of_the_shortest_window_keeps_the_longer_ones_counting(
    tmp_path: Path,
) -> None:
    """What the re-authentication lockout forgives after a right password: the short window
    only, so an owner's right passwords do not restart a thief's daily count on the session
    they share (src/tidings/auth/reauth.py)."""
    settings = make_settings(
        tmp_path, "sqlite+aiosqlite://", rate_limits={"reauth_lockout": "2/hour;3/day"}
    )
    limiter = RateLimiter(settings)
    for _ in range(2):
        await limiter.enforce("reauth_lockout", "session-1")
    with pytest.raises(RateLimited):
        await limiter.enforce("reauth_lockout", "session-1")  # the hour is used up
    await limiter.reset("reauth_lockout", "session-1", shortest_only=True)
    await limiter.enforce("reauth_lockout", "session-1")  # the hour again: the 3rd of the day
    await limiter.reset("reauth_lockout", "session-1", shortest_only=True)
    with pytest.raises(RateLimited):
        await limiter.enforce("reauth_lockout", "session-1")  # the day still counts
    await limiter.reset("reauth_lockout", "session-1")  # every window
    await limiter.enforce("reauth_lockout", "session-1")
