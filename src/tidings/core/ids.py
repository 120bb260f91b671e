"""64-bit time-ordered ids (snowflake layout): 41 bits of milliseconds, 10 of node, 12 of sequence.

Ids sort by creation time, fit a signed BIGINT and are sent to clients as strings
(JavaScript loses precision past 2**53).
"""

from __future__ import annotations

import os
import threading
import time

from tidings.core.errors import ServiceUnavailable

EPOCH_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
NODE_BITS = 10
SEQUENCE_BITS = 12
MAX_NODE = (1 << NODE_BITS) - 1
MAX_SEQUENCE = (1 << SEQUENCE_BITS) - 1


class IdsUnavailable(ServiceUnavailable):
    """This process may not make ids now: its node id lease (:mod:`tidings.core.nodes`) is not
    confirmed (not leased yet, lost, or not renewed in time). A 503 to a request; a consumer's
    event is left for later."""

    slug = "ids-unavailable"


class IdGenerator:
    def __init__(self, node_id: int | None = None, valid_until: float | None = None) -> None:
        """``valid_until``: a ``time.monotonic()`` past which no id is made (the node's lease
        is then no longer known to be this process's); None: no limit."""
        if node_id is None:
            node_id = int.from_bytes(os.urandom(2), "big") & MAX_NODE
        if not 0 <= node_id <= MAX_NODE:
            raise ValueError(f"node_id must be within 0..{MAX_NODE}")
        self.node_id = node_id
        self.valid_until = valid_until
        self._lock = threading.Lock()
        self._last_ms = -1
        self._sequence = 0

    def next_id(self) -> int:
        if self.valid_until is not None and time.monotonic() >= self.valid_until:
            raise IdsUnavailable(
                "This server cannot make new ids until its node id lease is confirmed; "
                "retry shortly.",
                headers={"Retry-After": "5"},
            )
        with self._lock:
            now = max(int(time.time() * 1000), self._last_ms)  # never go back in time
            if now == self._last_ms:
                self._sequence = (self._sequence + 1) & MAX_SEQUENCE
                if self._sequence == 0:  # sequence exhausted in this millisecond
                    now = self._last_ms + 1
            else:
                self._sequence = 0
            self._last_ms = now
            return (
                ((now - EPOCH_MS) << (NODE_BITS + SEQUENCE_BITS))
                | (self.node_id << SEQUENCE_BITS)
                | self._sequence
            )


def id_timestamp_ms(snowflake: int) -> int:
    return (snowflake >> (NODE_BITS + SEQUENCE_BITS)) + EPOCH_MS


_generator: IdGenerator | None = None


def configure_ids(node_id: int | None, valid_until: float | None = None) -> None:
    global _generator
    _generator = IdGenerator(node_id, valid_until)


def extend_ids(node_id: int, valid_until: float) -> None:
    """The lease of ``node_id`` was renewed: ids may be made until ``valid_until``."""
    if _generator is not None and _generator.node_id == node_id:
        _generator.valid_until = valid_until


def refuse_ids() -> None:
    """No id until a node is leased (:func:`configure_ids` again)."""
    configure_ids(0, valid_until=0.0)


def new_id() -> int:
    global _generator
    if _generator is None:
        _generator = IdGenerator()
    return _generator.next_id()
