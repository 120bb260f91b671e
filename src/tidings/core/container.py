"""The long-lived objects one app instance owns, built once by the app factory."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from tidings.auth.providers.registry import ProviderRegistry
from tidings.core.db import Database
from tidings.core.keys import KeyMaterial, load_key_material
from tidings.core.security import PasswordHasher, TokenSigner
from tidings.feeds.store import connect, open_feed_store
from tidings.posts.cache import open_row_cache
from tidings.ratelimit.limiter import RateLimiter
from tidings.settings import Settings

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from tidings.events.runtime import EventRuntime


@dataclass
class Container:
    settings: Settings
    db: Database
    keys: KeyMaterial
    hasher: PasswordHasher
    signer: TokenSigner
    limiter: RateLimiter = field(init=False)
    events: EventRuntime | None = field(default=None)
    oauth: ProviderRegistry | None = field(default=None)  # sign-in providers + their HTTP client
    # the feed store's and the row cache's client (TIDINGS_FEED_STORE / TIDINGS_ROW_CACHE=redis)
    redis: Redis | None = field(default=None)

    def __post_init__(self) -> None:
        self.limiter = RateLimiter(self.settings)
        if self.oauth is None:
            self.oauth = ProviderRegistry(self.settings, self.keys)
        if self.redis is None and self.settings.feed_store == "redis":
            self.redis = open_feed_store(self.settings, self.db.sessions)
        row_cache = self.settings.effective_row_cache
        if row_cache == "redis":
            self.redis = self.redis or connect(self.settings)
            open_row_cache(self.settings, self.redis, self.db.sessions)
        elif row_cache == "memory":
            open_row_cache(self.settings, None, self.db.sessions)

    @classmethod
    def build(cls, settings: Settings) -> Container:
        keys = load_key_material(settings)
        return cls(
            settings=settings,
            db=Database(
                settings.effective_database_url,
                pool_size=settings.db_pool_size,
                echo=settings.db_echo,
                pool_timeout=settings.db_pool_timeout_seconds,
            ),
            keys=keys,
            hasher=PasswordHasher.from_settings(settings),
            signer=TokenSigner(
                keys,
                issuer=settings.jwt_issuer,
                audience=settings.jwt_audience,
                ttl_seconds=settings.access_token_ttl_seconds,
            ),
        )

    def build_events(self) -> EventRuntime:
        from tidings.events.registry import build_registry
        from tidings.events.runtime import EventRuntime

        shared = self.settings.effective_row_cache == "redis"
        registry = build_registry(shared_row_cache=shared)
        self.events = EventRuntime(self.settings, self.db, registry, self)
        return self.events

    async def close(self) -> None:
        if self.oauth is not None:
            await self.oauth.aclose()
        if self.redis is not None:
            await self.redis.aclose(close_connection_pool=True)
        await self.db.dispose()
