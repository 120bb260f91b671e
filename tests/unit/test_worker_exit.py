"""A stopped worker ends even when a task outlives its cancellation (asyncio.run would wait
for it for ever)."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from tidings import cli
from tidings.events import runtime


async def test_tasks_that_end_when_cancelled_let_the_worker_exit_normally(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    exits: list[int] = []
    monkeypatch.setattr(cli.os, "_exit", exits.append)
    sleeper = asyncio.create_task(asyncio.sleep(60))
    await cli._end_stragglers()
    assert sleeper.cancelled()
    assert exits == []


async def test_a_task_that_ignores_its_cancellation_ends_the_process(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(runtime, "STOP_SECONDS", 0.1)
    exits: list[int] = []
    monkeypatch.setattr(cli.os, "_exit", exits.append)
    release = asyncio.Event()

    async def stubborn() -> None:
        while not release.is_set():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(0.02)

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0.05)  # running: a task cancelled before its first step just ends
    try:
        await cli._end_stragglers()
        assert exits == [1]
    finally:
        release.set()
        await task
