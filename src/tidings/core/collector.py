"""Garbage-collector settings for the server processes (``TIDINGS_GC_TUNING``).

CPython's cyclic collector runs a young collection every 700 net allocations of tracked
objects and, every so often, a full one over every tracked object. A Tidings process holds
about 200,000 long-lived objects after startup (modules, the ORM's mappers, pydantic and
FastAPI's models and routes), and the requests in flight keep enough young objects alive to
trigger a full collection about once a second under load: measured on the full-scale feed,
each one cost 130-200 ms and the collector took about a fifth of the process's CPU. Request
code leaves no cyclic garbage of its own (cached rows are plain objects,
:class:`tidings.posts.cache.CachedPost`; sessions empty their ``info`` on close,
:mod:`tidings.core.db`), so collecting rarely loses nothing.

:func:`tune_collector` therefore collects once, moves everything alive at startup into the
permanent generation (``gc.freeze``: never scanned again), and raises the thresholds. Called by
the API's lifespan and by ``tidings worker`` once they are up.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 50_000  # net allocations between young collections (CPython: 700)
OLDER_THRESHOLD = 20  # young collections per older one, and so on (CPython: 10)


def tune_collector() -> None:
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, OLDER_THRESHOLD, OLDER_THRESHOLD)
