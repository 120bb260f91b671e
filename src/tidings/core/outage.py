"""An optional dependency that just failed is skipped for a few seconds (reads fall back to the
database) instead of every request waiting on it again.

The users of one Redis client (the row cache and the feed store) share a pause for the
client's connection (:func:`outage_of`): when one of them cannot reach Redis, the others skip
it too, so a request pays the client's timeouts once rather than once per user. An error from
a Redis that answers (out of memory, a wrong type) pauses only the user that met it.
"""

from __future__ import annotations

import time
from weakref import WeakKeyDictionary

import structlog
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from tidings.core.metrics import bump, metrics

log = structlog.get_logger("tidings.outage")

UNREACHABLE = (RedisConnectionError, RedisTimeoutError, OSError, TimeoutError)


class Outage:
    def __init__(self, event: str, seconds: float = 5.0, shared: Outage | None = None) -> None:
        self.event = event  # the log event of a failure, e.g. "row_cache_failed"
        self.seconds = seconds
        self.shared = shared  # the client's pause: connection failures trip it instead
        self._until = 0.0

    @property
    def available(self) -> bool:
        now = time.monotonic()
        return now >= self._until and (self.shared is None or now >= self.shared._until)

    @property
    def shared_available(self) -> bool:
        """Whether the client's connection is not paused (this user's own pause aside)."""
        return self.shared is None or time.monotonic() >= self.shared._until

    def failed(self, exc: BaseException, *, by: str | None = None) -> None:
        """Skip the dependency for the next few seconds (every user of the client when it
        could not be reached); ``by`` names the user that failed."""
        paused = self.shared if self.shared is not None and isinstance(exc, UNREACHABLE) else self
        paused._until = time.monotonic() + paused.seconds
        bump(metrics().dependency_pauses, paused.event)
        log.warning(paused.event, by=by, error=f"{type(exc).__name__}: {exc}")

    def reset(self) -> None:
        """Available again at once (tests)."""
        self._until = 0.0
        if self.shared is not None:
            self.shared._until = 0.0


_BY_CLIENT: WeakKeyDictionary[object, Outage] = WeakKeyDictionary()


def outage_of(client: object) -> Outage:
    """The connection pause of a Redis client, shared by everything that uses it."""
    found = _BY_CLIENT.get(client)
    if found is None:
        found = _BY_CLIENT[client] = Outage("redis_unavailable")
    return found
