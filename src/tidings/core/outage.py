"""An optional dependency that just failed is skipped for a few seconds (reads fall back to the
database) instead of every request waiting on it again.

The users of one Redis client (the row cache and the feed store) share one :class:`Outage`
(:func:`outage_of`): when one of them fails, the others skip Redis too, so a request pays the
client's timeouts once rather than once per user.
"""

from __future__ import annotations

import time
from weakref import WeakKeyDictionary

import structlog

log = structlog.get_logger("tidings.outage")


class Outage:
    def __init__(self, event: str, seconds: float = 5.0) -> None:
        self.event = event  # the log event of a failure, e.g. "redis_unavailable"
        self.seconds = seconds
        self._until = 0.0

    @property
    def available(self) -> bool:
        return time.monotonic() >= self._until

    def failed(self, exc: BaseException, *, by: str | None = None) -> None:
        """Skip the dependency for the next few seconds; ``by`` names the user that failed."""
        self._until = time.monotonic() + self.seconds
        log.warning(self.event, by=by, error=f"{type(exc).__name__}: {exc}")


_BY_CLIENT: WeakKeyDictionary[object, Outage] = WeakKeyDictionary()


def outage_of(client: object) -> Outage:
    """The one :class:`Outage` of a Redis client, shared by everything that uses it."""
    found = _BY_CLIENT.get(client)
    if found is None:
        found = _BY_CLIENT[client] = Outage("redis_unavailable")
    return found
