"""Session fixtures for the sign-in provider tests; test modules import the ones they use.

``oidc_provider`` runs the real OpenID Connect provider (skipped with one line when Node or npm
is missing, a failure under CI=true); ``github_server`` runs the GitHub stand-in.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from tests.oidc.github_standin import GitHubStandIn
from tests.oidc.harness import NodeUnavailable, OIDCProvider

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
CALLBACK_BASE = "http://testserver"  # the `client` fixture's base URL: our public base URL
APP_REDIRECT = "https://app.example.com/auth/done"
MOBILE_REDIRECT = "com.example.tidings:/oauth2redirect"
QUERY_REDIRECT = "https://app.example.com/cb?tenant=blue"
REDIRECT_URIS = [APP_REDIRECT, MOBILE_REDIRECT, QUERY_REDIRECT]

GOOGLE_CLIENT = {"client_id": "tidings-google", "client_secret": "google-secret-for-tests"}
OIDC_CLIENT = {"client_id": "tidings-keycloak", "client_secret": "keycloak-secret-for-tests"}
GITHUB_CLIENT = {"client_id": "Iv1.tidings-tests", "client_secret": "github-secret-for-tests"}


def callback_url(provider: str) -> str:
    return f"{CALLBACK_BASE}/api/v1/auth/{provider}/callback"


@pytest.fixture(scope="session")
def oidc_provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OIDCProvider]:
    clients = [
        {**GOOGLE_CLIENT, "redirect_uris": [callback_url("google")]},
        {**OIDC_CLIENT, "redirect_uris": [callback_url("keycloak")]},
    ]
    provider = OIDCProvider(clients, tmp_path_factory.mktemp("oidc") / "provider.log")
    try:
        provider.start()
    except NodeUnavailable as exc:
        message = f"Node/npm unavailable ({exc}); the OpenID Connect provider tests are skipped"
        if IN_CI:
            pytest.fail(message + " — under CI=true that is a failure", pytrace=False)
        pytest.skip(message)
    yield provider
    provider.stop()


@pytest.fixture(scope="session")
def github_server() -> Iterator[GitHubStandIn]:
    server = GitHubStandIn(**GITHUB_CLIENT)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def github(github_server: GitHubStandIn) -> Iterator[GitHubStandIn]:
    github_server.signed_in_as = None
    yield github_server
    github_server.on_token = None  # a test's probe must not outlive its database


def provider_settings(
    oidc: OIDCProvider | None = None, github: GitHubStandIn | None = None
) -> dict[str, Any]:
    """``make_settings`` overrides enabling the local providers that are running."""
    providers: dict[str, Any] = {}
    if oidc is not None:
        providers["google"] = {**GOOGLE_CLIENT, "issuer": oidc.issuer}
        providers["keycloak"] = {
            **OIDC_CLIENT,
            "type": "oidc",
            "issuer": oidc.issuer,
            "display_name": "Keycloak",
        }
    if github is not None:
        providers["github"] = {
            **GITHUB_CLIENT,
            "web_base": github.base_url,
            "api_base": github.base_url,
        }
    return {
        "oauth_providers": providers,
        "oauth_redirect_uris": REDIRECT_URIS,
        "oauth_callback_base_url": CALLBACK_BASE,
    }
