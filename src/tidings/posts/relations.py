"""The viewer's relations with the authors and posts of a page, through the row cache.

One fact per author (``a<id>``: following, blocking, muted, blocked by, as bits) and per post
(``p<id>``: liked, shared), kept per viewer in a Redis hash whose generation every write of
the viewer's relations ends (:mod:`tidings.posts.facts`). A warm page asks Redis once; facts
not cached yet cost one statement
(:meth:`tidings.posts.repository.PostRepository.viewer_relations`).
The in-memory row cache keeps them the same way inside its process; without a row cache, that
statement answers every time.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession

from tidings.core.cache import cache_of
from tidings.posts.facts import CHANGED, MEMO, RELATIONS
from tidings.posts.repository import (
    BLOCKED_BY,
    BLOCKING,
    FOLLOWING,
    LIKED,
    MUTED,
    SHARED,
    PostRepository,
)

# (relation, fact prefix, bit, the Relations field it fills)
_BITS = (
    (FOLLOWING, "a", 1, "following"),
    (BLOCKING, "a", 2, "blocking"),
    (MUTED, "a", 4, "muted"),
    (BLOCKED_BY, "a", 8, "blocked_by"),
    (LIKED, "p", 1, "liked"),
    (SHARED, "p", 2, "shared"),
)


@dataclass
class Relations:
    following: set[int] = field(default_factory=set)
    blocking: set[int] = field(default_factory=set)  # the viewer blocks them
    blocked_by: set[int] = field(default_factory=set)  # they block the viewer
    muted: set[int] = field(default_factory=set)
    liked: set[int] = field(default_factory=set)
    shared: set[int] = field(default_factory=set)

    @property
    def blocked(self) -> set[int]:
        """Blocked either way."""
        return self.blocking | self.blocked_by


async def relations_of(
    session: AsyncSession, viewer_id: int, authors: Iterable[int], posts: Iterable[int]
) -> Relations:
    """The viewer's relations among ``authors`` and ``posts``."""
    memo: dict[str, int] = session.info.setdefault(MEMO, {}).setdefault(viewer_id, {})
    names = {f"a{a}" for a in authors} | {f"p{p}" for p in posts}
    missing = names - memo.keys()
    if missing:

        async def load(wanted: list[str]) -> dict[str, int]:
            return await _load(session, viewer_id, wanted)

        cache = cache_of(session)
        if cache is None or viewer_id in session.info.get(CHANGED, ()):
            memo.update({name: 0 for name in missing})
            memo.update(await load(sorted(missing)))
        else:
            memo.update(await cache.get_facts(RELATIONS, viewer_id, missing, load))
    found = Relations()
    for name in names:
        value = memo.get(name, 0)
        if value:
            for _relation, prefix, bit, attribute in _BITS:
                if name[0] == prefix and value & bit:
                    getattr(found, attribute).add(int(name[1:]))
    return found


async def _load(session: AsyncSession, viewer_id: int, names: list[str]) -> dict[str, int]:
    """The facts ``names`` from the database (one statement); those not found are 0."""
    authors = [int(name[1:]) for name in names if name[0] == "a"]
    posts = [int(name[1:]) for name in names if name[0] == "p"]
    found = await PostRepository(session).viewer_relations(viewer_id, authors, posts)
    values = dict.fromkeys(names, 0)
    for relation, prefix, bit, _attribute in _BITS:
        for other in found[relation]:
            name = f"{prefix}{other}"
            values[name] = values.get(name, 0) | bit
    return values
