"""Typed settings, read from ``TIDINGS_*`` environment variables.

Nothing here touches the disk or the network; key material is loaded by
:mod:`tidings.core.keys` when the app is built.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

import platformdirs
from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

PLACEHOLDER_SECRETS = frozenset(
    {"", "changeme", "change-me", "changethis", "secret", "placeholder", "xxx", "todo"}
)


def _default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir("tidings", appauthor=False))


class Settings(BaseSettings):
    """Every setting Tidings reads. The README's configuration table mirrors this class."""

    model_config = SettingsConfigDict(env_prefix="TIDINGS_", extra="ignore", frozen=True)

    env: Literal["development", "production"] = "development"
    data_dir: Path = Field(default_factory=_default_data_dir)
    database_url: str | None = None
    db_pool_size: int = Field(default=10, ge=1, le=200)
    db_echo: bool = False
    auto_migrate: bool | None = None

    secret_key: SecretStr | None = None
    signing_keys: SecretStr | None = None
    signing_keys_file: Path | None = None
    jwt_issuer: str = "tidings"
    jwt_audience: str = "tidings-api"
    access_token_ttl_seconds: int = Field(default=900, ge=30, le=86_400)
    refresh_token_ttl_seconds: int = Field(default=30 * 86_400, ge=300, le=365 * 86_400)
    password_hash_time_cost: int = Field(default=3, ge=1, le=20)
    password_hash_memory_kib: int = Field(default=65_536, ge=1024, le=1_048_576)
    password_hash_parallelism: int = Field(default=4, ge=1, le=16)

    broker: Literal["memory", "redis", "rabbitmq"] = "memory"
    broker_url: str | None = None
    relay_in_api: bool | None = None
    relay_poll_seconds: float = Field(default=0.5, gt=0, le=60)
    relay_redelivery_seconds: int = Field(default=30, ge=1, le=3600)
    worker_concurrency: int = Field(default=20, ge=1, le=1000)
    worker_grace_seconds: float = Field(default=10.0, ge=0, le=600)
    consumer_max_attempts: int = Field(default=5, ge=1, le=50)
    consumer_retry_base_seconds: float = Field(default=0.5, gt=0, le=600)

    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_max_connections: int = Field(default=50, ge=1, le=10_000)
    rate_limit_enabled: bool = True
    rate_limit_storage: Literal["memory", "redis"] = "memory"
    rate_limits: dict[str, str] = Field(default_factory=dict)
    trusted_proxies: Annotated[list[str], NoDecode] = Field(default_factory=list)

    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "console"] | None = None
    docs_enabled: bool = True
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    max_json_depth: int = Field(default=32, ge=2, le=512)
    debug: bool = False
    node_id: int | None = Field(default=None, ge=0, le=1023)

    @field_validator("cors_origins", "trusted_proxies", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @property
    def is_production(self) -> bool:
        return self.env == "production"

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{self.data_dir / 'tidings.db'}"

    @property
    def effective_broker_url(self) -> str:
        if self.broker_url:
            return self.broker_url
        if self.broker == "rabbitmq":
            return "amqp://guest:guest@127.0.0.1:5672/"
        return "redis://127.0.0.1:6379/0"

    @property
    def runs_relay_in_api(self) -> bool:
        """The API process relays and consumes events itself (the embedded default)."""
        if self.relay_in_api is not None:
            return self.relay_in_api
        return self.broker == "memory"

    @property
    def effective_log_format(self) -> str:
        return self.log_format or ("json" if self.is_production else "console")

    @property
    def should_auto_migrate(self) -> bool:
        return self.auto_migrate if self.auto_migrate is not None else not self.is_production


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()
