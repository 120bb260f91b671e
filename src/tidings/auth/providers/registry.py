"""The configured providers, the outbound HTTP client they share, and the flow's keys.

One registry per app (on the :class:`~tidings.core.container.Container`). Tests replace
``http`` to point providers at local servers.
"""

from __future__ import annotations

import httpx2

from tidings import __version__
from tidings.auth.providers.base import ProviderClient
from tidings.auth.providers.crypto import StateCookie, TokenCipher
from tidings.auth.providers.github import GitHubProvider
from tidings.auth.providers.oidc import OIDCProvider
from tidings.core.errors import ConfigurationError, NotFound
from tidings.core.keys import KeyMaterial
from tidings.settings import OAuthProviderSettings, Settings

DISPLAY_NAMES = {"google": "Google", "github": "GitHub"}
DEFAULT_SCOPES = {"github": ["read:user", "user:email"]}
OIDC_SCOPES = ["openid", "email", "profile"]


def build_provider(name: str, config: OAuthProviderSettings) -> ProviderClient:
    kind = config.type or "oidc"  # resolved by the settings already
    display_name = (
        config.display_name
        or DISPLAY_NAMES.get(name)
        or name.replace("_", " ").replace("-", " ").title()
    )
    secret = config.client_secret.get_secret_value()
    if kind == "github":
        return GitHubProvider(
            name,
            display_name=display_name,
            client_id=config.client_id,
            client_secret=secret,
            scopes=config.scopes or DEFAULT_SCOPES["github"],
            web_base=config.web_base,
            api_base=config.api_base,
            link_by_email=config.link_by_email,
        )
    assert config.issuer is not None  # settings resolve it
    return OIDCProvider(
        name,
        kind=kind,
        display_name=display_name,
        client_id=config.client_id,
        client_secret=secret,
        issuer=config.issuer,
        scopes=config.scopes or OIDC_SCOPES,
        link_by_email=config.link_by_email,
        trusted_audiences=tuple(config.trusted_audiences),
    )


def _cipher(settings: Settings, keys: KeyMaterial) -> TokenCipher:
    if settings.token_encryption_keys is not None:
        raw = settings.token_encryption_keys.get_secret_value()
        return TokenCipher([k.strip().encode() for k in raw.split(",") if k.strip()])
    if settings.is_production and settings.enabled_oauth_providers:
        raise ConfigurationError("TIDINGS_TOKEN_ENCRYPTION_KEYS is required with sign-in providers")
    return TokenCipher.from_secret(keys.secret_key)


class ProviderRegistry:
    def __init__(
        self,
        settings: Settings,
        keys: KeyMaterial,
        http: httpx2.AsyncClient | None = None,
    ) -> None:
        self.settings = settings
        self.providers: dict[str, ProviderClient] = {
            name: build_provider(name, config)
            for name, config in settings.enabled_oauth_providers.items()
        }
        self.redirect_uris = frozenset(settings.oauth_redirect_uris)
        self.cipher = _cipher(settings, keys)
        self.cookie = StateCookie(keys.secret_key)
        self.http = http or httpx2.AsyncClient(
            follow_redirects=False,
            headers={"User-Agent": f"tidings/{__version__}"},
            timeout=10.0,
        )

    def get(self, name: str) -> ProviderClient:
        provider = self.providers.get(name)
        if provider is None:
            raise NotFound(f"No sign-in provider named '{name}' is enabled.")
        return provider

    def callback_url(self, name: str, request_base_url: str) -> str:
        """Our redirect URI at the provider: what to register there (see docs/oauth.md)."""
        base = self.settings.oauth_callback_base_url or request_base_url.rstrip("/")
        return f"{base}/api/v1/auth/{name}/callback"

    def public_base(self, request_base_url: str) -> str:
        return self.settings.oauth_callback_base_url or request_base_url.rstrip("/")

    def secure_cookies(self, request_base_url: str) -> bool:
        return self.public_base(request_base_url).startswith("https://")

    async def aclose(self) -> None:
        await self.http.aclose()
