"""What the writes of a viewer's relations record: the viewer's cached facts end after commit.

A viewer's relations with authors (follows, blocks either way, mutes) and posts (likes, shares)
are cached per viewer (:mod:`tidings.posts.relations`, on
:meth:`tidings.core.cache.RowCache.get_facts`). Every write that changes one calls
:func:`relations_changed` for each viewer whose answers it changes, in the same unit of work:
their hashes are closed after the commit, what this unit of work had read of them is
forgotten at once, and it reads them from its own transaction from then on (the cache still
holds the old answers, and must not be filled with uncommitted ones).
"""

from __future__ import annotations

from typing import Any

from tidings.core.cache import FACTS, record_eviction

RELATIONS = f"{FACTS}rel2"  # 2: blocks split by direction (bit 2 was either way)
MEMO = "tidings.relations"  # session.info: {viewer id: {fact name: value}} read in this unit
CHANGED = "tidings.relations.changed"  # session.info: viewers whose relations it changes


def relations_changed(info: dict[Any, Any], *user_ids: int) -> None:
    """These users' relations change in this transaction (``session.info``)."""
    record_eviction(info, RELATIONS, user_ids)
    info.setdefault(CHANGED, set()).update(int(user_id) for user_id in user_ids)
    memo = info.get(MEMO)
    if memo:
        for user_id in user_ids:
            memo.pop(int(user_id), None)
