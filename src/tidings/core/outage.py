"""An optional dependency that just failed is skipped for a few seconds (reads fall back to the
database) instead of every request waiting on it again."""

from __future__ import annotations

import time

import structlog

log = structlog.get_logger("tidings.outage")


class Outage:
    def __init__(self, event: str, seconds: float = 5.0) -> None:
        self.event = event  # the log event of a failure, e.g. "feed_store_unavailable"
        self.seconds = seconds
        self._until = 0.0

    @property
    def available(self) -> bool:
        return time.monotonic() >= self._until

    def failed(self, exc: BaseException) -> None:
        self._until = time.monotonic() + self.seconds
        log.warning(self.event, error=f"{type(exc).__name__}: {exc}")
