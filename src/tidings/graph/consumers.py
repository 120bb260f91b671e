"""The graph consumer: after a follow, block or mute (or its undoing), it closes the cached
relations that the write changed once more.

The request that made the change closes them after its commit (:mod:`tidings.posts.facts`).
That eviction is lost if Redis does not take it and the process stops before sending it again.
The old facts would then decide, until they expire (``TIDINGS_CACHE_TTL_SECONDS``), what the
users see of each other: a blocked user could still read the blocker's timeline and posts. The
event was written in the same transaction as the change, so it outlives the process. Here the
eviction is sent again when the event is applied. While Redis still fails, the delivery is
deferred (:class:`~tidings.events.consumers.RetryLater`: the relay publishes the event again
later, and it is never dead-lettered for it) until Redis takes it or the facts it would close
have expired anyway (older than the TTL).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from redis.exceptions import RedisError
from sqlalchemy.ext.asyncio import AsyncSession

from tidings.core.cache import cache_of
from tidings.core.db import utcnow
from tidings.events import domain
from tidings.events.consumers import ConsumerRegistry, Envelope, RetryLater
from tidings.posts.facts import RELATIONS

CONSUMER = "relations"

# which users' facts each event changes (as tidings.graph.repository records them)
ACTOR_ONLY = {
    domain.UserFollowed.event_type,
    domain.UserUnfollowed.event_type,
    domain.UserMuted.event_type,
    domain.UserUnmuted.event_type,
}
BOTH = {domain.UserBlocked.event_type, domain.UserUnblocked.event_type}


async def handle(session: AsyncSession, env: Envelope, _context: Any) -> None:
    cache = cache_of(session)
    if cache is None:
        return
    users = [env.int_field("user_id")]
    if env.event_type in BOTH:
        users.append(env.int_field("target_user_id"))
    try:
        await cache.evict_again([(RELATIONS, user) for user in users if user])
    except RedisError as exc:
        if utcnow() - env.created_at > timedelta(milliseconds=cache.ttl_ms):
            return  # whatever the write left stale has expired since
        raise RetryLater(f"{type(exc).__name__}: {exc}") from exc


def register(registry: ConsumerRegistry) -> None:
    registry.add(CONSUMER, ACTOR_ONLY | BOTH, handle)
