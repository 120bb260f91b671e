"""Home timelines in Redis: per-user sorted sets of post ids, and per-author recent lists.

Layout (``P`` = ``TIDINGS_FEED_KEY_PREFIX``):

* ``P tl:<user>``: the user's home timeline. Post ids are 64-bit snowflakes, beyond the 2**53 a
  double score holds exactly, so every member has score 0 and *is* the id, zero-padded to 19
  digits: lexicographic order is numeric order, pages are ``ZREVRANGEBYLEX`` from ``(<cursor>``
  and trimming to the cap is ``ZREMRANGEBYRANK`` of the lowest ranks.
* ``P au:<author>``: recent post ids of an author with more followers than the fan-out
  threshold (not fanned out; merged at read time). ``P celebs`` lists those authors.
* Sentinels: ``~`` (sorts after every id) marks a list that is *complete*: from its lowest id
  upwards it holds every post of its sources; id 0 (all zeros) is added when a list was built
  from a source with fewer rows than the cap, i.e. it is complete to the beginning, until
  trimming removes it; ``!`` (sorts before every id) only makes a list exist while it is being
  built, so fan-out writes reach it during the build.

A timeline lives ``TIDINGS_FEED_INACTIVE_DAYS`` after its owner's last feed read (its TTL is
renewed on each read): fan-out writes only to timelines that exist, so inactive users cost
nothing, and their next read rebuilds the timeline from the database.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tidings.core.outage import Outage, outage_of
from tidings.core.redispool import connect as connect_url
from tidings.settings import Settings

log = structlog.get_logger("tidings.feeds")

COMPLETE = "~"
BOTTOM = "0" * 19  # id 0: the list is complete to the very beginning (trimmed first)
BUILDING = "!"
# Lowest and highest possible id members, as lexicographic range bounds.
LOWEST = "[0"
HIGHEST = "(" + COMPLETE

# Add ARGV[3..] to every list in KEYS that exists, never below the list's lowest id (a list is
# complete only from its lowest id upwards: an older id would open a gap), then trim to ARGV[1]
# ids. ARGV[2] = 1 creates missing lists (author lists). Returns the number of entries written.
# Members all score 0, so ZRANGE 0 1 is the lexicographically lowest two: "!" (building) sorts
# first, then ids, then "~" (complete). One command tells both whether the list exists and its
# lowest id: three commands per list instead of four (EXISTS + ZRANGEBYLEX before). Trimming
# is amortised: a full list is cut back to the cap (plus the complete mark) only once it is
# cap/16 over, not on every add.
_ADD = """
local cap = tonumber(ARGV[1])
local slack = math.max(1, math.floor(cap / 16))
local create = ARGV[2] == '1'
local written = 0
for _, key in ipairs(KEYS) do
  local head = redis.call('ZRANGE', key, 0, 1)
  if create or head[1] then
    local low = head[1]
    if low == '!' then low = head[2] end
    if low == '~' then low = nil end
    for i = 3, #ARGV do
      if low == nil or ARGV[i] >= low then
        written = written + redis.call('ZADD', key, 0, ARGV[i])
      end
    end
    if redis.call('ZCARD', key) > cap + slack then
      redis.call('ZREMRANGEBYRANK', key, 0, -(cap + 2))
    end
  end
end
return written
"""


# A page's first look at the store, in one round trip: renew the timeline's TTL (ARGV[1] s),
# then, when it is complete, per list in KEYS (the timeline, then the merged author lists):
# {complete, up to ARGV[3] ids below ARGV[2] newest first, its lowest id}. Returns {} when
# the timeline is missing or still being built. Where a pipeline of three commands per list
# made redis-py parse each reply, this is one command and one reply.
_WINDOW = """
if ARGV[4] == '1' then
  redis.call('EXPIRE', KEYS[1], ARGV[1])
  if not redis.call('ZSCORE', KEYS[1], '~') then
    return {}
  end
end
local out = {}
for i, key in ipairs(KEYS) do
  local complete = redis.call('ZSCORE', key, '~') and 1 or 0
  local ids = redis.call('ZREVRANGEBYLEX', key, ARGV[2], '[0', 'LIMIT', 0, tonumber(ARGV[3]))
  local low = redis.call('ZRANGEBYLEX', key, '[0', '(~', 'LIMIT', 0, 1)
  out[i] = {complete, ids, low}
end
return out
"""
CELEBS_SECONDS = 1.0  # how long a process trusts its copy of the set of merged authors


def member(post_id: int) -> str:
    return f"{post_id:019d}"


def connect(settings: Settings) -> Redis:
    """A client on a blocking pool: under load a request waits for a connection instead of
    failing (a plain pool with ``max_connections`` raises; :mod:`tidings.core.redispool`)."""
    return connect_url(settings.redis_url, max_connections=settings.redis_max_connections)


@dataclass(frozen=True)
class Window:
    """Candidate ids below the cursor, newest first, from the timeline and the merged author
    lists; every post of the feed in ``[floor, cursor)`` is among them. ``complete`` says the
    scan reached ``floor`` (the rest lies below it, in the database only)."""

    ids: list[int]
    floor: int
    complete: bool


INCOMPLETE = Window(ids=[], floor=-1, complete=False)  # the timeline must be (re)built first


class FeedStore:
    def __init__(self, redis: Redis, settings: Settings) -> None:
        self.redis = redis
        self.cap = settings.feed_cap
        self.prefix = settings.feed_key_prefix
        self.ttl = settings.feed_inactive_days * 86_400
        self.threshold = settings.fanout_threshold
        self.batch = settings.fanout_batch
        self._add = redis.register_script(_ADD)
        self._window = redis.register_script(_WINDOW)
        self._celebs: tuple[float, list[int]] | None = None  # (read at, ids)
        # after a Redis error (here or in the row cache on the same client), reads skip Redis
        # (pull only) for a few seconds
        self.outage = Outage("feed_store_failed", shared=outage_of(redis))

    # --- keys ------------------------------------------------------------------------------

    def timeline_key(self, user_id: int) -> str:
        return f"{self.prefix}tl:{user_id}"

    def author_key(self, author_id: int) -> str:
        return f"{self.prefix}au:{author_id}"

    @property
    def celebs_key(self) -> str:
        return f"{self.prefix}celebs"

    # --- health ----------------------------------------------------------------------------

    @property
    def available(self) -> bool:
        return self.outage.available

    def failed(self, exc: BaseException) -> None:
        """Reads go to the database for a few seconds instead of waiting on a dead Redis."""
        self.outage.failed(exc, by="feed_store")

    # --- writes ----------------------------------------------------------------------------

    async def add_to_timelines(self, user_ids: Sequence[int], post_ids: Sequence[int]) -> int:
        """Fan-out: add the posts to each existing timeline, one script call per batch."""
        if not user_ids or not post_ids:
            return 0
        args: list[str | int] = [self.cap, 0, *(member(p) for p in post_ids)]
        written = 0
        for start in range(0, len(user_ids), self.batch):
            keys = [self.timeline_key(u) for u in user_ids[start : start + self.batch]]
            written += int(await self._add(keys=keys, args=args))
        return written

    async def add_to_author(self, author_id: int, post_ids: Iterable[int]) -> None:
        members = [member(p) for p in post_ids]
        async with self.redis.pipeline(transaction=False) as pipe:
            await self._add(
                keys=[self.author_key(author_id)], args=[self.cap, 1, *members], client=pipe
            )
            pipe.sadd(self.celebs_key, str(author_id))
            await pipe.execute()
        self._celebs = None

    async def author_list_exists(self, author_id: int) -> bool:
        return bool(await self.redis.zscore(self.author_key(author_id), COMPLETE) is not None)

    async def store_author(self, author_id: int, post_ids: Sequence[int]) -> None:
        """(Re)build an author list from the database's newest ``cap`` ids (merged with
        anything fan-out wrote meanwhile) and mark it complete."""
        await self._store(self.author_key(author_id), post_ids, ttl=None)
        await self.redis.sadd(self.celebs_key, str(author_id))
        self._celebs = None

    async def begin_timeline(self, user_id: int) -> None:
        """Make the timeline exist (without the complete mark) before reading the database,
        so posts fanned out during the build are not lost."""
        key = self.timeline_key(user_id)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zadd(key, {BUILDING: 0})
            pipe.expire(key, self.ttl)
            await pipe.execute()

    async def store_timeline(self, user_id: int, post_ids: Sequence[int]) -> None:
        await self._store(self.timeline_key(user_id), post_ids, ttl=self.ttl)

    async def _store(self, key: str, post_ids: Sequence[int], ttl: int | None) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            members = dict.fromkeys((member(p) for p in post_ids), 0)
            if len(post_ids) < self.cap:  # the source ran out: complete down to id 0
                members[BOTTOM] = 0
            pipe.zadd(key, members)
            pipe.zadd(key, {COMPLETE: 0})
            pipe.zremrangebyrank(key, 0, -(self.cap + 2))
            if ttl is not None:
                pipe.expire(key, ttl)
            await pipe.execute()

    async def lowest(self, user_id: int) -> tuple[bool, int]:
        """(the timeline exists and is complete, its lowest id or 0 when it has none)."""
        key = self.timeline_key(user_id)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zscore(key, COMPLETE)
            pipe.zrangebylex(key, LOWEST, HIGHEST, start=0, num=1)
            complete, low = await pipe.execute()
        return complete is not None, int(low[0]) if low else 0

    async def forget_user(self, user_id: int) -> None:
        """An erased account: its own timeline and recent-posts list go, and it is merged into
        no one's feed any more (this process forgets its copy of that set at once)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.delete(self.timeline_key(user_id), self.author_key(user_id))
            pipe.srem(self.celebs_key, str(user_id))
            await pipe.execute()
        self._celebs = None

    # --- reads -----------------------------------------------------------------------------

    async def celebs(self) -> list[int]:
        """The authors merged at read time: this process reads the set at most once every
        :data:`CELEBS_SECONDS` (a new one is seen that much later at worst, as fan-out is)."""
        now = time.monotonic()
        if self._celebs is None or now - self._celebs[0] > CELEBS_SECONDS:
            members = await self.redis.smembers(self.celebs_key)
            self._celebs = (now, sorted(int(c) for c in members))
        return self._celebs[1]

    async def window(
        self,
        user_id: int,
        authors: Sequence[int],
        before: int | None,
        count: int,
        *,
        touch: bool = False,
    ) -> Window | None:
        """Up to ``count`` candidate ids below ``before`` from the timeline and each author
        list (one round trip). None when a list is missing or not complete. ``touch``: the
        page's first look, which also renews the timeline's TTL, and returns
        :data:`INCOMPLETE` when the timeline is missing or still being built."""
        keys = [self.timeline_key(user_id), *(self.author_key(a) for a in authors)]
        top = f"({member(before)}" if before is not None else HIGHEST
        replies = await self._window(keys=keys, args=[self.ttl, top, count, "1" if touch else "0"])
        if not replies:
            return INCOMPLETE
        floor = 0
        merged: set[int] = set()
        exhausted = True
        for complete, ids, low in replies:
            if not complete:
                return None
            if low:
                floor = max(floor, int(low[0]))
            if len(ids) == count:
                # this list has more below: only ids above its last one are known complete
                exhausted = False
                floor = max(floor, int(ids[-1]))
            merged.update(int(m) for m in ids)
        ids_desc = sorted((i for i in merged if i >= floor and i > 0), reverse=True)
        return Window(ids=ids_desc, floor=floor, complete=exhausted)

    async def missing_authors(self, authors: Sequence[int]) -> list[int]:
        if not authors:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for author in authors:
                pipe.zscore(self.author_key(author), COMPLETE)
            found = await pipe.execute()
        return [a for a, f in zip(authors, found, strict=True) if f is None]


SESSION_KEY = "tidings.feed_store"


def attach(sessions: async_sessionmaker[AsyncSession], store: FeedStore) -> None:
    """Every session of this database carries the store (``session.info``), so the feed read
    and the fan-out consumer find it without new parameters through the layers."""
    sessions.configure(info={SESSION_KEY: store})


def store_of(session: AsyncSession) -> FeedStore | None:
    store = session.info.get(SESSION_KEY)
    return store if isinstance(store, FeedStore) else None


def open_feed_store(settings: Settings, sessions: async_sessionmaker[AsyncSession]) -> Redis:
    """The Redis client of the feed store (owned and closed by the container), attached to
    the sessions."""
    redis = connect(settings)
    attach(sessions, FeedStore(redis, settings))
    return redis


__all__ = ["FeedStore", "RedisError", "Window", "connect", "member", "open_feed_store", "store_of"]
