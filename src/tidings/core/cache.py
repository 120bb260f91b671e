"""A read-through cache of the rows rendering needs (posts, author profiles), on Redis or, for
one process, in memory (:class:`MemoryRowCache`).

What a viewer may see is decided by SQL everywhere but in one place: the home feed read from
the feed store, whose candidates are decided on cached rows and relations
(:mod:`tidings.feeds.rules`), so a warm page queries nothing. That is why every write that
changes a cached row or relation evicts it after its commit, and why a fill never puts back
what a reader loaded before a commit (below). An eviction Redis does not take (unreachable)
is kept and sent again before the process next reads the cache; the window left is a process
that stops first, whose lost evictions leave entries until their TTL
(``TIDINGS_CACHE_TTL_SECONDS``), except a viewer's relations: the event of the write that
changed them closes them again (:mod:`tidings.graph.consumers`).

* **Read**: one round trip for a batch of several kinds (a Lua script: each key's value, or,
  for a miss, an attempt at its lock); misses are loaded from the database in one query per
  kind, and one more script call fills them. A warm page pays one round trip, a cold one two
  (where an ``MGET``, then a lock pipeline and a fill pipeline per kind, made seven: a cold
  feed page now costs 38 % less API CPU, measured side by side at full scale).
* **Stampede protection**: a miss is filled only by the request that wins the key's lock
  (``SET lock NX PX``, inside the read); the others wait a few milliseconds for it, then load
  what is still missing themselves (without filling), so a hot key expiring costs the
  database one query.
* **Invalidation**: a write records the rows it changed in its session (ORM flush events and
  counter updates, see :mod:`tidings.posts.cache`); after the unit of work commits, each key is
  overwritten by a short-lived tombstone. Fills use ``SET NX``, so a reader that loaded the row
  before the commit cannot put the old version back while the tombstone lives.
* **Facts** (:meth:`RowCache.get_facts`): small integers about one owner (a viewer's relation
  with an author or a post), one Redis hash per owner, filled field by field as pages ask.
  The hash carries a generation that readers create and writers end: after its commit a
  write replaces the owner's hash by a closed one (a tombstone, like a row's) that readers
  load past without filling until it expires, and a fill lands only in the generation it was
  read in. So a reader that loaded facts before the commit never puts them back, even one
  whose database snapshot is older than the commit (SQLite's, fixed at a transaction's first
  read).
* **Redis down**: reads go to the database and the cache is skipped for a few seconds; an
  eviction that failed is sent again before this process's next cache read (at most
  ``MAX_UNSENT`` kept), or the entry expires after ``TIDINGS_CACHE_TTL_SECONDS``.

Hand-written rather than a caching library: it is batched (one read for a page + one query per
kind for the misses), which decorator-style caches do not do, and it needs write-side tombstones.
"""

from __future__ import annotations

import asyncio
import random
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Collection, Iterable, Iterator
from contextlib import suppress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
import structlog
from redis.exceptions import RedisError

from tidings.core.outage import Outage, outage_of

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

log = structlog.get_logger("tidings.cache")

MAX_UNSENT = 100_000  # evictions kept through an outage, per process
SESSION_KEY = "tidings.row_cache"
EVICT_KEY = "tidings.row_cache.evict"
PREFETCHED = "tidings.row_cache.prefetched"  # session.info: {kind: {id: row}} read ahead
TOMBSTONE = "~"
WAIT_ROUNDS = 10  # polls for keys another request is loading (50 ms in all)
WAIT_SECONDS = 0.005
# A row lives between (1 - TTL_JITTER) x TTL and TTL: rows filled together (a cold start, a
# burst of new readers) do not all expire together and come back as one wave of misses.
TTL_JITTER = 0.2

# Each key's value; for a key without one, 1 when this call took its lock (``:lock``, SET NX PX
# ARGV[1] ms: the caller loads and fills it), 0 when another reader holds it, -1 for a
# tombstone (load, never fill). One round trip where MGET and a lock pipeline took two.
_READ_OR_LOCK = f"""
local out = {{}}
for i, key in ipairs(KEYS) do
  local value = redis.call('GET', key)
  if value == '{TOMBSTONE}' then
    out[i] = -1
  elseif value then
    out[i] = value
  elseif redis.call('SET', key .. ':lock', '1', 'NX', 'PX', ARGV[1]) then
    out[i] = 1
  else
    out[i] = 0
  end
end
return out
"""
_LOCKED, _THEIRS = 1, 0
# Fill the keys this reader locked: ARGV holds a (value, lifetime in ms) pair per key, an empty
# value for a row that does not exist; SET NX (a tombstone written meanwhile wins), then free
# the lock. One command where a pipeline of two per key cost a parse of each reply.
_FILL = """
for i, key in ipairs(KEYS) do
  local value = ARGV[2 * i - 1]
  if value ~= '' then
    redis.call('SET', key, value, 'NX', 'PX', ARGV[2 * i])
  end
  redis.call('DEL', key .. ':lock')
end
return #KEYS
"""

# Linked rows in one round trip: each asked row of one kind (ARGV[3]), then the rows of that kind
# named by its reference fields (ARGV[6..]), then, for all of them, the row of the owner kind
# (ARGV[4]) named by the owner field (ARGV[5]); each read as in _READ_OR_LOCK. The fields are
# found in the value's text: orjson writes compact JSON, in which ``,"name":`` starts a field
# and never appears inside a string (a quote there is escaped). It reads keys it was not given
# (the referenced rows): fine on one Redis server, not across a cluster's slots.
_READ_LINKED = f"""
local lock_ms, prefix, kind, owner_kind = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local function read(key)
  local value = redis.call('GET', key)
  if value == '{TOMBSTONE}' then
    return -1
  elseif value then
    return value
  elseif redis.call('SET', key .. ':lock', '1', 'NX', 'PX', lock_ms) then
    return 1
  end
  return 0
end
-- a field's integer value: a plain search for ,"name": (no pattern scan over the text), then
-- the digits right after it (nil for null)
local function field(value, name)
  local at = string.find(value, name, 1, true)
  if at then return string.match(value, '^%d+', at + #name) end
end
local owner_field = ',"' .. ARGV[5] .. '":'
local owners = {{}}
local function note_owner(value)
  local id = field(value, owner_field)
  if id then owners[id] = true end
end
local ref_fields = {{}}
for r = 6, #ARGV do ref_fields[#ref_fields + 1] = ',"' .. ARGV[r] .. '":' end
local rows, asked, refs = {{}}, {{}}, {{}}
for i, key in ipairs(KEYS) do
  asked[key] = true
  local value = read(key)
  rows[i] = value
  if type(value) == 'string' then
    note_owner(value)
    for _, name in ipairs(ref_fields) do
      local id = field(value, name)
      if id then refs[id] = true end
    end
  end
end
local ref_ids, ref_rows = {{}}, {{}}
for id in pairs(refs) do
  local key = prefix .. kind .. ':' .. id
  if not asked[key] then
    local value = read(key)
    ref_ids[#ref_ids + 1] = id
    ref_rows[#ref_rows + 1] = value
    if type(value) == 'string' then note_owner(value) end
  end
end
local owner_ids, owner_rows = {{}}, {{}}
for id in pairs(owners) do
  owner_ids[#owner_ids + 1] = id
  owner_rows[#owner_rows + 1] = read(prefix .. owner_kind .. ':' .. id)
end
return {{rows, ref_ids, ref_rows, owner_ids, owner_rows}}
"""

# Facts: the owner's hash holds a generation (``g``) and one field per fact. A reader with no
# hash starts one (ARGV[1]: a new generation, ARGV[2]: its lifetime in ms, the same for every
# field: a fact lives at most that long); returns the generation, then each asked field's value
# (false for a field not filled yet).
_FACTS_READ = (
    """
local generation = redis.call('HGET', KEYS[1], 'g')
if generation == '"""
    + TOMBSTONE
    + """' then
  return {generation}
end
if not generation then
  redis.call('HSET', KEYS[1], 'g', ARGV[1])
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return {ARGV[1]}
end
local out = {generation}
for i = 3, #ARGV do
  out[i - 1] = redis.call('HGET', KEYS[1], ARGV[i])
end
return out
"""
)
# Fill facts read from the database, only into the generation they were asked in (ARGV[1]):
# a write committed meanwhile closed the hash, and its successor has another generation. One
# HSET per field (``unpack`` of thousands of arguments overflows Lua's stack).
_FACTS_FILL = """
if redis.call('HGET', KEYS[1], 'g') ~= ARGV[1] then
  return 0
end
for i = 2, #ARGV, 2 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
end
return 1
"""

Row = dict[str, Any]
Loader = Callable[[list[int]], Awaitable[dict[int, Row]]]
FactLoader = Callable[[list[str]], Awaitable[dict[str, int]]]
# the kinds of fact hashes (:meth:`RowCache.get_facts`) start with this: evicted by deletion
FACTS = "facts."


@dataclass(frozen=True)
class Link:
    """Rows of ``kind`` that name other rows of their kind (``refs``: e.g. the post a share
    shares) and each a row of ``owner_kind`` (``owner``: e.g. the author's profile), read
    together by :meth:`RowCache.get_linked`. Integer ids, or None, in those fields. On Redis
    the script finds a field as the first ``,"name":`` in the row's JSON: each must be a
    top-level key, not the row's first, and come before any nested object with a key of the
    same name (post rows: ``author_id``, ``share_of_id`` and ``quote_of_id`` come before
    ``media``, in the table's column order)."""

    kind: str
    load: Loader
    refs: tuple[str, ...]
    owner: str
    owner_kind: str
    owner_load: Loader

    def refs_of(self, rows: Iterable[Row]) -> set[int]:
        return {row[name] for row in rows for name in self.refs if row.get(name) is not None}

    def owners_of(self, rows: Iterable[Row]) -> set[int]:
        return {row[self.owner] for row in rows if row.get(self.owner) is not None}


Linked = tuple[dict[int, Row], dict[int, Row], dict[int, Row]]  # asked, referenced, owners


class RowCache:
    def __init__(
        self,
        redis: Redis,
        *,
        prefix: str,
        ttl_seconds: int,
        tombstone_ms: int = 5_000,
        lock_ms: int = 2_000,
    ) -> None:
        self.redis = redis
        self.prefix = prefix
        self.ttl_ms = ttl_seconds * 1000
        self.tombstone_ms = tombstone_ms
        self.lock_ms = lock_ms
        # its own pause, and the client's (shared with the feed store) for unreachability
        self.outage = Outage("row_cache_failed", shared=outage_of(redis))
        self._read_or_lock = redis.register_script(_READ_OR_LOCK)
        self._read_linked = redis.register_script(_READ_LINKED)
        self._fill = redis.register_script(_FILL)
        self._facts_read = redis.register_script(_FACTS_READ)
        self._facts_fill = redis.register_script(_FACTS_FILL)
        self._unsent: set[tuple[str, int]] = set()  # evictions an outage kept from Redis

    def key(self, kind: str, row_id: int) -> str:
        return f"{self.prefix}{kind}:{row_id}"

    def lifetime_ms(self) -> int:
        """A fill's lifetime: the TTL less a random part of up to ``TTL_JITTER`` of it."""
        return self.ttl_ms - random.randrange(int(self.ttl_ms * TTL_JITTER) + 1)  # noqa: S311

    @property
    def available(self) -> bool:
        return self.outage.available

    async def _read(self, kind: str, ids: list[int]) -> dict[int, Row]:
        return (await self._read_groups([(kind, ids)]))[0]

    async def _read_groups(self, groups: list[tuple[str, list[int]]]) -> list[dict[int, Row]]:
        """Several kinds in one ``MGET``."""
        keys = [self.key(kind, i) for kind, ids in groups for i in ids]
        values = iter(await self.redis.mget(keys))
        out: list[dict[int, Row]] = []
        for _kind, ids in groups:
            found: dict[int, Row] = {}
            for row_id in ids:
                raw = next(values)
                if raw is not None and raw != TOMBSTONE:
                    found[row_id] = orjson.loads(raw)
            out.append(found)
        return out

    async def get_many(self, kind: str, ids: Collection[int], load: Loader) -> dict[int, Row]:
        """The rows of ``ids`` that exist: from the cache, else from ``load`` (the database)."""
        return (await self.get_groups([(kind, ids, load)]))[0]

    async def get_groups(
        self, groups: list[tuple[str, Collection[int], Loader]]
    ) -> list[dict[int, Row]]:
        """:meth:`get_many` for several kinds at once, in one round trip when all are cached."""
        wanted = [(kind, sorted(set(ids)), load) for kind, ids, load in groups]
        if self.available:
            try:
                await self._resend()
                return await self._fetch(wanted)
            except RedisError as exc:
                self.outage.failed(exc, by="row_cache")
        return [await load(ids) if ids else {} for _kind, ids, load in wanted]

    async def _fetch(self, wanted: list[tuple[str, list[int], Loader]]) -> list[dict[int, Row]]:
        """One script call reads every key and takes the lock of each miss; the misses are
        loaded per kind; one pipeline fills the rows this reader locked and frees the locks.
        A miss whose lock another reader holds is waited for (briefly, then loaded without
        filling); a tombstoned row is loaded and never filled."""
        keys = [self.key(kind, i) for kind, ids, _load in wanted for i in ids]
        if not keys:
            return [{} for _ in wanted]
        replies = iter(await self._read_or_lock(keys=keys, args=[self.lock_ms]))
        return await self._settle([(kind, ids, load, replies) for kind, ids, load in wanted])

    async def _settle(
        self, wanted: list[tuple[str, list[int], Loader, Iterator[Any]]]
    ) -> list[dict[int, Row]]:
        """Each kind's rows from the script's replies (one per id, in order): values as they
        are; misses loaded, and filled where this reader holds the lock (one script call)."""
        out: list[dict[int, Row]] = []
        fills: list[tuple[str, int, Row | None]] = []
        for kind, ids, load, replies in wanted:
            found: dict[int, Row] = {}
            mine: list[int] = []
            theirs: list[int] = []
            unfilled: list[int] = []
            for row_id in ids:
                reply = next(replies)
                if isinstance(reply, str | bytes):
                    found[row_id] = orjson.loads(reply)
                else:
                    {_LOCKED: mine, _THEIRS: theirs}.get(int(reply), unfilled).append(row_id)
            theirs = await self._wait_for(kind, theirs, found)
            if mine or theirs or unfilled:
                loaded = await load(mine + theirs + unfilled)
                found.update(loaded)
                fills += [(kind, row_id, loaded.get(row_id)) for row_id in mine]
            out.append(found)
        if fills:
            args: list[bytes | int] = []
            for _kind, _row_id, row in fills:
                args += [orjson.dumps(row) if row is not None else b"", self.lifetime_ms()]
            await self._fill(keys=[self.key(k, i) for k, i, _row in fills], args=args)
        return out

    async def get_linked(self, link: Link, ids: Collection[int]) -> Linked:
        """The rows ``ids`` of ``link.kind``, the rows of that kind their references name, and
        the owner rows of them all: one round trip when all are cached (rows loaded from the
        database are followed afterwards, as :meth:`get_groups` would)."""
        wanted = sorted(set(ids))
        if self.available and wanted:
            try:
                await self._resend()
                return await self._linked(link, wanted)
            except RedisError as exc:
                self.outage.failed(exc, by="row_cache")
        return await self._linked_rounds(link, wanted)

    async def _linked(self, link: Link, ids: list[int]) -> Linked:
        keys = [self.key(link.kind, i) for i in ids]
        args: list[str | int] = [self.lock_ms, self.prefix, link.kind, link.owner_kind, link.owner]
        args += link.refs
        rows, ref_ids, ref_rows, owner_ids, owner_rows = await self._read_linked(
            keys=keys, args=args
        )
        refs = [int(i) for i in ref_ids]
        owners = [int(i) for i in owner_ids]
        asked, referenced, found_owners = await self._settle(
            [
                (link.kind, ids, link.load, iter(rows)),
                (link.kind, refs, link.load, iter(ref_rows)),
                (link.owner_kind, owners, link.owner_load, iter(owner_rows)),
            ]
        )
        # what was loaded from the database (not cached yet) was not followed in Redis
        every = {**referenced, **asked}
        more_refs = link.refs_of(asked.values()) - every.keys() - set(refs)
        if more_refs:
            referenced.update((await self.get_groups([(link.kind, more_refs, link.load)]))[0])
            every.update(referenced)
        more_owners = link.owners_of(every.values()) - set(owners)
        if more_owners:
            found_owners.update(
                (await self.get_groups([(link.owner_kind, more_owners, link.owner_load)]))[0]
            )
        return asked, self._referenced(link, asked, every), found_owners

    async def _linked_rounds(self, link: Link, ids: list[int]) -> Linked:
        """:meth:`get_linked` in three reads (in memory, or the database while Redis fails)."""
        (asked,) = await self.get_groups([(link.kind, ids, link.load)])
        (referenced,) = await self.get_groups(
            [(link.kind, link.refs_of(asked.values()) - asked.keys(), link.load)]
        )
        every = {**referenced, **asked}
        (owners,) = await self.get_groups(
            [(link.owner_kind, link.owners_of(every.values()), link.owner_load)]
        )
        return asked, self._referenced(link, asked, every), owners

    @staticmethod
    def _referenced(link: Link, asked: dict[int, Row], every: dict[int, Row]) -> dict[int, Row]:
        """The rows the asked ones name (some may be among the asked ones themselves)."""
        return {i: every[i] for i in link.refs_of(asked.values()) if i in every}

    async def _wait_for(self, kind: str, theirs: list[int], found: dict[int, Row]) -> list[int]:
        """Poll for rows other readers are loading (bounded); returns those still missing."""
        for _ in range(WAIT_ROUNDS if theirs else 0):
            await asyncio.sleep(WAIT_SECONDS)
            arrived = await self._read(kind, theirs)
            found.update(arrived)
            theirs = [i for i in theirs if i not in arrived]
            if not theirs:
                break
        return theirs

    async def get_facts(
        self, kind: str, owner: int, fields: Collection[str], load: FactLoader
    ) -> dict[str, int]:
        """The value of each field for ``owner`` (0 where the loader finds none): the filled
        ones from the owner's hash, the rest from ``load`` (the database) in one call, then
        filled into the generation they were read in. One round trip when all are filled."""
        wanted = sorted(set(fields))
        if self.available:
            try:
                await self._resend()
                return await self._facts(kind, owner, wanted, load)
            except RedisError as exc:
                self.outage.failed(exc, by="row_cache")
        loaded = await load(wanted) if wanted else {}
        return {name: loaded.get(name, 0) for name in wanted}

    async def _facts(
        self, kind: str, owner: int, wanted: list[str], load: FactLoader
    ) -> dict[str, int]:
        key = self.key(kind, owner)
        new_generation = secrets.token_hex(8)
        reply = await self._facts_read(keys=[key], args=[new_generation, self.ttl_ms, *wanted])
        generation, values = reply[0], reply[1:]
        if generation in (TOMBSTONE, TOMBSTONE.encode()):  # just changed: load, never fill
            loaded = await load(wanted) if wanted else {}
            return {name: loaded.get(name, 0) for name in wanted}
        found: dict[str, int] = {}
        missing: list[str] = []
        for index, name in enumerate(wanted):
            value = values[index] if index < len(values) else None
            if value is None:
                missing.append(name)
            else:
                found[name] = int(value)
        if missing:
            loaded = await load(missing)
            filled: list[str | int] = []
            for name in missing:
                found[name] = loaded.get(name, 0)
                filled += [name, found[name]]
            try:
                await self._facts_fill(keys=[key], args=[generation, *filled])
            except RedisError as exc:  # served from what was loaded; not loaded again
                self.outage.failed(exc, by="row_cache")
        return found

    async def evict(self, keys: Iterable[tuple[str, int]]) -> None:
        """Tombstone these rows (after the commit that changed them); fact hashes are closed
        (their generation ends, and none starts until the tombstone expires). Evictions Redis
        did not take are kept, and sent again before this process next reads the cache."""
        wanted = set(keys)
        if not wanted:
            return
        try:
            await self._send(wanted)
        except RedisError as exc:
            self.outage.failed(exc, by="row_cache")
            self._keep_unsent(wanted)

    async def evict_again(self, keys: Iterable[tuple[str, int]]) -> None:
        """Evict again, for the consumer of the write's event (:mod:`tidings.graph.consumers`):
        raises RedisError (the consumer defers the event), where :meth:`evict` keeps the keys
        in this process only."""
        wanted = set(keys)
        if wanted:
            await self._send(wanted)

    def _keep_unsent(self, keys: set[tuple[str, int]]) -> None:
        room = MAX_UNSENT - len(self._unsent)
        if len(keys) > room:  # beyond the bound the entries expire with their TTL
            log.warning("row_cache_evictions_dropped", count=len(keys) - max(room, 0))
            keys = set(sorted(keys)[: max(room, 0)])
        self._unsent |= keys

    async def _resend(self) -> None:
        """The evictions an outage kept, before this process reads the cache again (raises
        RedisError, keeping them, when Redis still fails)."""
        if self._unsent:
            keys, self._unsent = self._unsent, set()
            try:
                await self._send(keys)
            except RedisError:
                self._keep_unsent(keys)
                raise

    async def flush_unsent(self) -> int:
        """For a process about to exit (a CLI command): send the evictions an outage kept;
        how many Redis still did not take (they expire with their TTL)."""
        with suppress(RedisError):
            await self._resend()
        return len(self._unsent)

    async def _send(self, keys: set[tuple[str, int]]) -> None:
        # MULTI/EXEC: a fact hash is closed with its expiry or not at all (never left closed
        # for good by a connection lost between the two)
        async with self.redis.pipeline(transaction=True) as pipe:
            for kind, row_id in sorted(keys):
                if kind.startswith(FACTS):  # closed: its facts go, and no fill lands
                    key = self.key(kind, row_id)
                    pipe.delete(key)
                    pipe.hset(key, "g", TOMBSTONE)
                    pipe.pexpire(key, self.tombstone_ms)
                else:
                    pipe.set(self.key(kind, row_id), TOMBSTONE, px=self.tombstone_ms)
            await pipe.execute()


class MemoryRowCache(RowCache):
    """The row cache inside this process (``TIDINGS_ROW_CACHE=memory``, the embedded default):
    the same contract as on Redis without a round trip — batched reads, one load per cold key
    (concurrent readers wait for it), tombstones that keep a version read before a write from
    being put back, a TTL — plus a bound on the number of rows (least recently used go first).

    Rows are kept serialised, as on Redis, so no caller can change a cached row through what it
    was given. Its evictions reach only this process: it is for one process that serves the API
    and runs the consumers (settings and ``tidings serve`` refuse it otherwise).
    """

    def __init__(
        self,
        *,
        ttl_seconds: int,
        max_entries: int,
        tombstone_ms: int = 5_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        # no RowCache.__init__: nothing here talks to Redis (no client, key prefix or locks)
        self.ttl_ms = ttl_seconds * 1000
        self.tombstone_ms = tombstone_ms
        self.max_entries = max_entries
        self.outage = Outage("row_cache_unavailable")  # never trips: nothing to be down
        self._clock = clock
        # (kind, id) -> (expires at, serialised row); least recently used first
        self._entries: OrderedDict[tuple[str, int], tuple[float, bytes]] = OrderedDict()
        # (kind, id) -> expires at: tombstones live apart, so the bound never drops a live one
        self._tombstones: dict[tuple[str, int], float] = {}
        self._loading: dict[tuple[str, int], asyncio.Future[None]] = {}
        self._unsent: set[tuple[str, int]] = set()  # never filled: nothing here fails
        # (kind, owner) -> (expires at, facts): one generation each, least recently used first
        self._fact_sets: OrderedDict[tuple[str, int], tuple[float, dict[str, int]]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def _live(self, key: tuple[str, int]) -> tuple[float, bytes] | None:
        entry = self._entries.get(key)
        if entry is not None and entry[0] <= self._clock():
            del self._entries[key]
            return None
        return entry

    def _tombstoned(self, key: tuple[str, int]) -> bool:
        until = self._tombstones.get(key)
        if until is not None and until <= self._clock():
            del self._tombstones[key]
            return False
        return until is not None

    async def _read_groups(self, groups: list[tuple[str, list[int]]]) -> list[dict[int, Row]]:
        out: list[dict[int, Row]] = []
        for kind, ids in groups:
            found: dict[int, Row] = {}
            for row_id in ids:
                entry = self._live((kind, row_id))
                if entry is not None:
                    self._entries.move_to_end((kind, row_id))
                    found[row_id] = orjson.loads(entry[1])
            out.append(found)
        return out

    async def _fetch(self, wanted: list[tuple[str, list[int], Loader]]) -> list[dict[int, Row]]:
        found = await self._read_groups([(kind, ids) for kind, ids, _load in wanted])
        out: list[dict[int, Row]] = []
        for (kind, ids, load), rows in zip(wanted, found, strict=True):
            missing = [i for i in ids if i not in rows]
            out.append(await self._load_missing(kind, missing, load, rows) if missing else rows)
        return out

    async def get_linked(self, link: Link, ids: Collection[int]) -> Linked:
        return await self._linked_rounds(link, sorted(set(ids)))

    def _put(self, key: tuple[str, int], value: bytes) -> None:
        self._entries[key] = (self._clock() + self.lifetime_ms() / 1000, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    async def _load_missing(
        self, kind: str, missing: list[int], load: Loader, found: dict[int, Row]
    ) -> dict[int, Row]:
        theirs = [i for i in missing if (kind, i) in self._loading]
        mine = [i for i in missing if (kind, i) not in self._loading]
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        for row_id in mine:
            self._loading[(kind, row_id)] = done
        try:
            if theirs:  # wait for the readers loading them (bounded), then take what arrived
                pending = {self._loading[(kind, i)] for i in theirs}
                await asyncio.wait(pending, timeout=WAIT_ROUNDS * WAIT_SECONDS)
                arrived = await self._read(kind, theirs)
                found.update(arrived)
                theirs = [i for i in theirs if i not in arrived]
            if not mine and not theirs:
                return found
            loaded = await load(mine + theirs)
            found.update(loaded)
            for row_id in mine:
                # like SET NX: a live entry (a tombstone above all) is never overwritten
                key = (kind, row_id)
                if row_id in loaded and not self._tombstoned(key) and self._live(key) is None:
                    self._put(key, orjson.dumps(loaded[row_id]))
            return found
        finally:
            for row_id in mine:
                self._loading.pop((kind, row_id), None)
            done.set_result(None)

    async def get_facts(
        self, kind: str, owner: int, fields: Collection[str], load: FactLoader
    ) -> dict[str, int]:
        """:meth:`RowCache.get_facts` in this process: an owner's facts are one dict (its
        generation) that an eviction drops and tombstones; a load fills the dict it started
        from, which no reader sees any more once an eviction overtook the load."""
        wanted = sorted(set(fields))
        key = (kind, owner)
        if self._tombstoned(key):  # just changed: load, never fill
            loaded = await load(wanted) if wanted else {}
            return {name: loaded.get(name, 0) for name in wanted}
        now = self._clock()
        entry = self._fact_sets.get(key)
        if entry is None or entry[0] <= now:
            entry = (now + self.ttl_ms / 1000, {})
            self._fact_sets[key] = entry
            while len(self._fact_sets) > self.max_entries:
                self._fact_sets.popitem(last=False)
        self._fact_sets.move_to_end(key)
        facts = entry[1]
        found = {name: facts[name] for name in wanted if name in facts}
        missing = [name for name in wanted if name not in found]
        if missing:
            loaded = await load(missing)
            for name in missing:  # into the generation it started from: detached if evicted
                found[name] = facts[name] = loaded.get(name, 0)
        return found

    async def evict(self, keys: Iterable[tuple[str, int]]) -> None:
        now = self._clock()
        if len(self._tombstones) > self.max_entries:  # expired ones go (live ones stay)
            self._tombstones = {k: t for k, t in self._tombstones.items() if t > now}
        for key in set(keys):
            self._entries.pop(key, None)
            self._fact_sets.pop(key, None)
            self._tombstones[key] = now + self.tombstone_ms / 1000

    async def evict_again(self, keys: Iterable[tuple[str, int]]) -> None:
        """Nothing: this process's evictions are never lost, and another process's memory is
        out of reach (a worker beside an API process with its own memory cache)."""


def attach(sessions: async_sessionmaker[AsyncSession], cache: RowCache) -> None:
    """Every session of this database carries the cache (``session.info``)."""
    info = dict(sessions.kw.get("info") or {})
    info[SESSION_KEY] = cache
    sessions.configure(info=info)


def cache_of(session: AsyncSession) -> RowCache | None:
    cache = session.info.get(SESSION_KEY)
    return cache if isinstance(cache, RowCache) else None


def record_eviction(info: dict[Any, Any], kind: str, ids: Iterable[int]) -> None:
    """Remember rows this transaction changed (``session.info``); evicted after commit. What
    this unit of work read of them ahead (:data:`PREFETCHED`) is forgotten at once."""
    wanted = {int(i) for i in ids}
    memo = info.get(PREFETCHED, {}).get(kind)
    if memo:
        for row_id in wanted:
            memo.pop(row_id, None)
    if SESSION_KEY in info:
        info.setdefault(EVICT_KEY, set()).update((kind, row_id) for row_id in wanted)


async def after_commit(session: AsyncSession) -> None:
    keys = session.info.pop(EVICT_KEY, None)
    cache = cache_of(session)
    if keys and cache is not None:
        await cache.evict(keys)


def after_rollback(session: AsyncSession) -> None:
    session.info.pop(EVICT_KEY, None)
