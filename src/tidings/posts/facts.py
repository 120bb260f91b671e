"""What the writes of a viewer's relations record: the viewer's cached facts end after commit.

A viewer's relations with authors (follows, blocks either way, mutes) and posts (likes, shares)
are cached per viewer (:mod:`tidings.posts.relations`, on
:meth:`tidings.core.cache.RowCache.get_facts`). Every write that changes one calls
:func:`relations_changed` for each viewer whose answers it changes, in the same unit of work:
their hashes are deleted after the commit, and what this unit of work had read of them is
forgotten at once.
"""

from __future__ import annotations

from typing import Any

from tidings.core.cache import FACTS, record_eviction

RELATIONS = f"{FACTS}rel"
MEMO = "tidings.relations"  # session.info: {viewer id: {fact name: value}} read in this unit


def relations_changed(info: dict[Any, Any], *user_ids: int) -> None:
    """These users' relations change in this transaction (``session.info``)."""
    record_eviction(info, RELATIONS, user_ids)
    memo = info.get(MEMO)
    if memo:
        for user_id in user_ids:
            memo.pop(int(user_id), None)
