"""The relay's loop keeps a wake-up that arrives while a pass runs: an event committed just
after the pass looked at the outbox is relayed at once, not a poll interval later."""

from __future__ import annotations

import asyncio
import time

from tidings.events.relay import OutboxRelay


class _Relay(OutboxRelay):
    """run_once without a database: the first pass is woken midway (a NOTIFY for an event it
    did not see), the next ones find nothing."""

    def __init__(self) -> None:
        super().__init__(None, None, None)  # type: ignore[arg-type]  # never used here
        self.passes: list[float] = []

    async def run_once(self) -> int:
        self.passes.append(time.monotonic())
        if len(self.passes) == 1:
            await asyncio.sleep(0)  # the pass has looked at the outbox: nothing due yet
            self.wake.set()  # ... and the commit's notification arrives before it returns
        return 0


async def test_a_wake_up_during_a_pass_starts_the_next_pass_at_once() -> None:
    relay, stop = _Relay(), asyncio.Event()
    task = asyncio.create_task(relay.run(stop, poll_interval=5.0))
    for _ in range(100):  # bounded: at most 1 s
        if len(relay.passes) >= 2:
            break
        await asyncio.sleep(0.01)
    stop.set()
    await asyncio.wait_for(task, timeout=2)
    assert len(relay.passes) >= 2, "the wake-up was lost: the relay slept its poll interval"
    assert relay.passes[1] - relay.passes[0] < 1.0
