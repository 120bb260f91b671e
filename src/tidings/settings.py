"""Typed settings, read from ``TIDINGS_*`` environment variables.

Nothing here touches the disk or the network; key material is loaded by
:mod:`tidings.core.keys` when the app is built.
"""

from __future__ import annotations

import ipaddress
import re
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

import platformdirs
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

PLACEHOLDER_SECRETS = frozenset(
    {"", "changeme", "change-me", "changethis", "secret", "placeholder", "xxx", "todo"}
)


def _default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir("tidings", appauthor=False))


PROVIDER_NAME_PATTERN = r"^[a-z][a-z0-9_-]{0,31}$"
_PROVIDER_NAME = re.compile(PROVIDER_NAME_PATTERN)
_URI_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
_HOST_NAME = re.compile(r"^[a-z0-9_]([a-z0-9_-]{0,62}\.?)*$")


class OAuthProviderSettings(BaseModel):
    """One sign-in provider, keyed by its name in ``TIDINGS_OAUTH_PROVIDERS`` (see docs/oauth.md).

    ``type`` defaults to the name when that is ``google`` or ``github``, else ``oidc``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["google", "github", "oidc"] | None = None
    client_id: str = Field(min_length=1, max_length=512)
    client_secret: SecretStr
    issuer: str | None = None  # google (default https://accounts.google.com) and oidc
    display_name: str | None = Field(default=None, max_length=50)
    scopes: list[str] | None = None  # default "openid email profile"; GitHub "read:user user:email"
    api_base: str = "https://api.github.com"  # github
    web_base: str = "https://github.com"  # github
    enabled: bool = True
    link_by_email: bool = True  # may a verified email join an existing verified account?
    trusted_audiences: list[str] = Field(default_factory=list)  # extra ID-token audiences (rare)


def _resolve_provider(name: str, config: OAuthProviderSettings) -> OAuthProviderSettings:
    if not _PROVIDER_NAME.match(name):
        raise ValueError(f"provider name {name!r} must match {PROVIDER_NAME_PATTERN}")
    kind = config.type or (name if name in ("google", "github") else "oidc")
    issuer = config.issuer
    if kind == "google" and issuer is None:
        issuer = "https://accounts.google.com"
    if kind != "github" and not (issuer and issuer.startswith(("https://", "http://"))):
        raise ValueError(f"provider {name!r} needs an http(s) issuer URL")
    return config.model_copy(update={"type": kind, "issuer": issuer})


def _check_redirect_uri(uri: str) -> str:
    if not _URI_SCHEME.match(uri) or "#" in uri or any(c.isspace() for c in uri):
        raise ValueError(f"redirect URI {uri!r} must be absolute, without a fragment or spaces")
    if uri.lower().startswith(("http://", "https://")) and len(uri.split("/", 3)[2]) == 0:
        raise ValueError(f"redirect URI {uri!r} has no host")
    return uri


def _check_allowed_host(entry: str) -> str:
    """A webhook allowlist entry: an IP network (``127.0.0.0/8``), an address, or a host name."""
    entry = entry.strip().lower()
    try:
        return str(ipaddress.ip_network(entry, strict=False))
    except ValueError:
        pass
    if not _HOST_NAME.match(entry):
        raise ValueError(f"webhook allowlist entry {entry!r} is neither a network nor a host name")
    return entry.rstrip(".")


class Settings(BaseSettings):
    """Every setting Tidings reads. The README's configuration table mirrors this class."""

    model_config = SettingsConfigDict(env_prefix="TIDINGS_", extra="ignore", frozen=True)

    env: Literal["development", "production"] = "development"
    data_dir: Path = Field(default_factory=_default_data_dir)
    database_url: str | None = None
    db_pool_size: int = Field(default=20, ge=1, le=200)
    db_pool_timeout_seconds: float = Field(default=30, gt=0, le=600)  # then a 503
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

    oauth_providers: dict[str, OAuthProviderSettings] = Field(default_factory=dict)
    oauth_redirect_uris: Annotated[list[str], NoDecode] = Field(default_factory=list)
    oauth_callback_base_url: str | None = None
    oauth_keep_provider_tokens: bool = True
    token_encryption_keys: SecretStr | None = None
    # OpenTelemetry traces exported by OTLP/HTTP (OTEL_EXPORTER_OTLP_* variables; the otel extra)
    tracing: bool = False
    # Prometheus metrics (docs/operations.md): GET /metrics on the API; a bearer token to
    # scrape it (required in production, else it is not served); the worker's own port
    metrics_enabled: bool = True
    metrics_token: SecretStr | None = None
    worker_metrics_port: int | None = Field(default=None, ge=1, le=65535)
    worker_metrics_host: str = "127.0.0.1"
    # moderators' and admins' powers only with two-step sign-in on (ASVS 4.3.1, docs/auth.md)
    staff_mfa: Literal["required", "optional"] = "required"

    broker: Literal["memory", "redis", "rabbitmq", "nats"] = "memory"
    broker_url: str | None = None
    relay_in_api: bool | None = None
    relay_poll_seconds: float = Field(default=0.5, gt=0, le=60)
    relay_redelivery_seconds: int = Field(default=30, ge=1, le=3600)
    worker_concurrency: int = Field(default=20, ge=1, le=1000)
    worker_grace_seconds: float = Field(default=10.0, ge=0, le=600)
    broker_startup_seconds: float = Field(default=300.0, ge=1, le=86_400)
    consumer_max_attempts: int = Field(default=5, ge=1, le=50)
    consumer_retry_base_seconds: float = Field(default=0.5, gt=0, le=600)

    # webhooks (docs/webhooks.md)
    webhook_allowed_hosts: Annotated[list[str], NoDecode] = Field(default_factory=list)
    webhook_encryption_keys: SecretStr | None = None
    webhook_secret_overlap_seconds: int = Field(default=86_400, ge=0, le=30 * 86_400)
    webhook_retry_schedule: Annotated[list[int], NoDecode] = Field(
        default_factory=lambda: [5, 300, 1800, 7200, 18_000, 36_000, 86_400]
    )
    webhook_connect_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    webhook_timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    webhook_max_response_bytes: int = Field(default=65_536, ge=0, le=10_485_760)
    webhook_concurrency: int = Field(default=10, ge=1, le=500)
    webhook_poll_seconds: float = Field(default=1.0, gt=0, le=60)
    webhook_breaker_threshold: int = Field(default=5, ge=1, le=1000)
    webhook_breaker_cooldown_seconds: int = Field(default=300, ge=1, le=86_400)

    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_max_connections: int = Field(default=50, ge=1, le=10_000)
    # home feeds (docs/performance.md): "none" = pull from the database only (embedded default)
    feed_store: Literal["none", "redis"] = "none"
    feed_cap: int = Field(default=800, ge=20, le=10_000)
    fanout_threshold: int = Field(default=10_000, ge=0)
    feed_inactive_days: int = Field(default=30, ge=1, le=365)
    fanout_batch: int = Field(default=1000, ge=1, le=100_000)
    feed_key_prefix: str = Field(default="tidings:feed:", min_length=1, max_length=100)
    # post bodies, author profiles and sign-in state (src/tidings/core/cache.py): "none" = read
    # them from the database every time; "memory" = inside this one process (its evictions reach
    # no other process); "redis" = shared; "auto" = "memory" for the embedded default (SQLite, and
    # the API relays and consumes its own events), else "none"
    row_cache: Literal["auto", "none", "memory", "redis"] = "auto"
    cache_max_entries: int = Field(default=50_000, ge=100, le=10_000_000)  # memory: rows kept
    cache_ttl_seconds: int = Field(default=60, ge=1, le=86_400)
    cache_key_prefix: str = Field(default="tidings:cache:", min_length=1, max_length=100)
    # freeze the startup heap and collect young objects rarely (src/tidings/core/collector.py)
    gc_tuning: bool = True

    rate_limit_enabled: bool = True
    rate_limit_storage: Literal["memory", "redis"] = "memory"
    rate_limits: dict[str, str] = Field(default_factory=dict)
    trusted_proxies: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # the one header those proxies set (the other is never read: a client could send it);
    # required with trusted_proxies: guessing it wrong lets clients choose their address
    proxy_header: Literal["x-forwarded-for", "forwarded"] | None = None

    # data retention (docs/operations.md): a loop next to the relay, and `tidings prune`
    retention_enabled: bool = True
    retention_interval_seconds: int = Field(default=3600, ge=10, le=7 * 86_400)
    retention_events_days: int = Field(default=7, ge=1, le=3650)
    retention_webhook_days: int = Field(default=30, ge=1, le=3650)
    retention_notifications_days: int = Field(default=90, ge=1, le=3650)
    retention_batch: int = Field(default=5000, ge=1, le=100_000)
    retention_max_batches: int = Field(default=100, ge=1, le=100_000)
    # account erasure (tidings.accounts.erasure): a loop next to the relay
    erasure_interval_seconds: float = Field(default=5.0, ge=0.05, le=3600)
    erasure_batch: int = Field(default=200, ge=1, le=10_000)
    erasure_max_batches: int = Field(default=50, ge=1, le=100_000)
    # outgoing mail (tidings.mail): a loop next to the relay sends what requests queued
    # None: "log" in development, "disabled" in production (where "log" is refused)
    mail_backend: Literal["log", "smtp", "disabled"] | None = None
    mail_from: str = Field(default="Tidings <no-reply@localhost>", max_length=254)
    mail_interval_seconds: float = Field(default=2.0, ge=0.05, le=3600)
    mail_max_attempts: int = Field(default=8, ge=1, le=100)
    smtp_host: str = "127.0.0.1"
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_security: Literal["starttls", "tls", "none"] = "starttls"
    smtp_timeout_seconds: float = Field(default=30.0, gt=0, le=300)
    # account recovery (tidings.recovery): where the links in its mails point ("{token}" is
    # replaced); unset, the mail gives the code to send to the API instead
    password_reset_url: str | None = None
    email_verification_url: str | None = None
    email_change_url: str | None = None
    recovery_token_minutes: int = Field(default=30, ge=5, le=24 * 60)

    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "console"] | None = None
    docs_enabled: bool = True
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    max_json_depth: int = Field(default=32, ge=2, le=512)
    node_id: int | None = Field(default=None, ge=0, le=1023)

    @field_validator("oauth_providers", mode="after")
    @classmethod
    def _resolve_providers(
        cls, value: dict[str, OAuthProviderSettings]
    ) -> dict[str, OAuthProviderSettings]:
        return {name: _resolve_provider(name, config) for name, config in value.items()}

    @field_validator("oauth_redirect_uris", mode="before")
    @classmethod
    def _split_redirect_uris(cls, value: object) -> object:
        if isinstance(value, str):
            value = [item.strip() for item in value.split(",") if item.strip()]
        if isinstance(value, list):
            return [_check_redirect_uri(str(item)) for item in value]
        return value

    @field_validator("metrics_token", mode="before")
    @classmethod
    def _empty_token_is_none(cls, value: object) -> object:
        # `TIDINGS_METRICS_TOKEN=` (an unset variable in a compose file) must not become a
        # token that an empty `Authorization: Bearer` matches
        return None if isinstance(value, str) and not value.strip() else value

    @model_validator(mode="after")
    def _metrics_token_long_enough(self) -> Settings:
        token = self.metrics_token
        if self.is_production and token is not None and len(token.get_secret_value()) < 32:
            raise ValueError("TIDINGS_METRICS_TOKEN needs at least 32 characters in production")
        return self

    @model_validator(mode="after")
    def _proxy_header_named(self) -> Settings:
        if self.trusted_proxies and self.proxy_header is None:
            raise ValueError(
                "TIDINGS_TRUSTED_PROXIES is set: set TIDINGS_PROXY_HEADER too, to the one "
                "header those proxies set (x-forwarded-for or forwarded); a client can send "
                "the other, and it must not be believed"
            )
        return self

    @model_validator(mode="after")
    def _mail_in_production(self) -> Settings:
        if self.is_production and self.mail_backend == "log":
            raise ValueError(
                "TIDINGS_MAIL_BACKEND=log writes one-time links to files: in production use "
                "smtp, or disabled (no password reset by mail)"
            )
        if self.is_production:
            for name in ("password_reset_url", "email_verification_url", "email_change_url"):
                url = getattr(self, name)
                if url is not None and not url.startswith("https://"):
                    raise ValueError(f"TIDINGS_{name.upper()} must be https in production")
        return self

    @field_validator(
        "password_reset_url", "email_verification_url", "email_change_url", mode="after"
    )
    @classmethod
    def _link_template(cls, value: str | None) -> str | None:
        if value is not None and (
            not value.startswith(("http://", "https://")) or "{token}" not in value
        ):
            raise ValueError("must be an http(s) URL containing {token}")
        return value

    @field_validator("oauth_callback_base_url", mode="after")
    @classmethod
    def _check_callback_base(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        if not value.startswith(("https://", "http://")) or "?" in value or "#" in value:
            raise ValueError(
                "must be the http(s) base URL of this API, e.g. https://api.example.com"
            )
        return value.rstrip("/")

    @model_validator(mode="after")
    def _oauth_production_requirements(self) -> Settings:
        if self.enabled_oauth_providers and self.is_production:
            if not self.oauth_callback_base_url:
                raise ValueError(
                    "TIDINGS_OAUTH_CALLBACK_BASE_URL is required with sign-in providers"
                )
            if self.token_encryption_keys is None:
                raise ValueError("TIDINGS_TOKEN_ENCRYPTION_KEYS is required with sign-in providers")
        return self

    @model_validator(mode="after")
    def _memory_cache_in_one_process(self) -> Settings:
        # its evictions reach only this process: another process relaying and consuming the
        # events (a separate `tidings worker`) is another writer it would not hear of
        if self.row_cache == "memory" and not self.runs_relay_in_api:
            raise ValueError(
                "TIDINGS_ROW_CACHE=memory serves one process that also relays and consumes its "
                "events (TIDINGS_BROKER=memory); with a separate worker use redis or none"
            )
        return self

    @field_validator("webhook_allowed_hosts", mode="before")
    @classmethod
    def _split_webhook_hosts(cls, value: object) -> object:
        if isinstance(value, str):
            value = [item.strip() for item in value.split(",") if item.strip()]
        if isinstance(value, list):
            return [_check_allowed_host(str(item)) for item in value]
        return value

    @field_validator("webhook_retry_schedule", mode="before")
    @classmethod
    def _split_retry_schedule(cls, value: object) -> object:
        if isinstance(value, str):
            value = [item.strip() for item in value.split(",") if item.strip()]
        if isinstance(value, list) and not 1 <= len(value) <= 20:
            raise ValueError("give between 1 and 20 retry delays (seconds, comma-separated)")
        return value

    @field_validator("webhook_retry_schedule", mode="after")
    @classmethod
    def _check_retry_schedule(cls, value: list[int]) -> list[int]:
        if any(delay < 1 or delay > 7 * 86_400 for delay in value):
            raise ValueError("each retry delay must be between 1 second and 7 days")
        return value

    @property
    def enabled_oauth_providers(self) -> dict[str, OAuthProviderSettings]:
        return {name: p for name, p in self.oauth_providers.items() if p.enabled}

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
    def effective_mail_backend(self) -> str:
        if self.mail_backend is not None:
            return self.mail_backend
        return "disabled" if self.is_production else "log"

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
        if self.broker == "nats":
            return "nats://127.0.0.1:4222"
        return "redis://127.0.0.1:6379/0"

    @property
    def effective_row_cache(self) -> Literal["none", "memory", "redis"]:
        if self.row_cache != "auto":
            return self.row_cache
        # the embedded default: SQLite, and this process relays and consumes its own events
        embedded = self.effective_database_url.startswith("sqlite") and self.runs_relay_in_api
        return "memory" if embedded else "none"

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
