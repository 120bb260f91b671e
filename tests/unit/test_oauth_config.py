"""Sign-in provider settings, the key helpers, usernames and GitHub's email choice."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from pydantic import ValidationError

from tests.conftest import make_settings
from tidings.auth.providers.codes import with_query
from tidings.auth.providers.crypto import StateCookie, TokenCipher
from tidings.auth.providers.github import pick_email
from tidings.auth.providers.registry import ProviderRegistry
from tidings.auth.providers.usernames import base_username, sanitise, unique_username
from tidings.core.errors import BadRequest, ConfigurationError, NotFound
from tidings.core.keys import load_key_material
from tidings.settings import Settings

PROVIDERS = (
    '{"google": {"client_id": "g", "client_secret": "google-secret-value"},'
    ' "github": {"client_id": "h", "client_secret": "hs"},'
    ' "keycloak": {"type": "oidc", "issuer": "https://sso.example/realms/t",'
    ' "client_id": "k", "client_secret": "ks"},'
    ' "okta": {"issuer": "https://okta.example", "client_id": "o", "client_secret": "os",'
    ' "enabled": false}}'
)


def test_providers_are_read_from_json_in_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TIDINGS_OAUTH_PROVIDERS", PROVIDERS)
    monkeypatch.setenv("TIDINGS_OAUTH_REDIRECT_URIS", "https://app.example/cb, myapp:/oauth")
    monkeypatch.setenv("TIDINGS_OAUTH_CALLBACK_BASE_URL", "https://api.example/")
    settings = Settings()
    google = settings.oauth_providers["google"]
    assert (google.type, google.issuer) == ("google", "https://accounts.google.com")
    assert google.client_secret.get_secret_value() == "google-secret-value"
    assert "google-secret-value" not in repr(settings)
    assert settings.oauth_providers["github"].type == "github"
    assert settings.oauth_providers["keycloak"].type == "oidc"
    assert settings.oauth_providers["okta"].type == "oidc"
    assert set(settings.enabled_oauth_providers) == {"google", "github", "keycloak"}
    assert settings.oauth_redirect_uris == ["https://app.example/cb", "myapp:/oauth"]
    assert settings.oauth_callback_base_url == "https://api.example"


@pytest.mark.parametrize(
    "providers",
    [
        '{"Bad Name": {"client_id": "a", "client_secret": "b"}}',
        '{"keycloak": {"client_id": "a", "client_secret": "b"}}',  # oidc without an issuer
        '{"google": {"client_id": "a"}}',  # no secret
        '{"google": {"client_id": "a", "client_secret": "b", "colour": "red"}}',
    ],
)
def test_bad_provider_settings_are_refused(monkeypatch: pytest.MonkeyPatch, providers: str) -> None:
    monkeypatch.setenv("TIDINGS_OAUTH_PROVIDERS", providers)
    with pytest.raises(ValidationError):
        Settings()


@pytest.mark.parametrize("uri", ["/relative", "https://app.example/cb#x", "https:///cb", "a b:c"])
def test_bad_redirect_uris_are_refused(uri: str) -> None:
    with pytest.raises(ValidationError):
        Settings(oauth_redirect_uris=[uri])


def test_production_needs_a_callback_base_and_encryption_keys(tmp_path: Path) -> None:
    providers = {"github": {"client_id": "a", "client_secret": "b"}}
    base = {"env": "production", "data_dir": tmp_path, "oauth_providers": providers}
    with pytest.raises(ValidationError, match="CALLBACK_BASE_URL"):
        Settings(**base)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="TOKEN_ENCRYPTION_KEYS"):
        Settings(**base, oauth_callback_base_url="https://api.example")  # type: ignore[arg-type]
    Settings(
        **base,  # type: ignore[arg-type]
        oauth_callback_base_url="https://api.example",
        token_encryption_keys=Fernet.generate_key().decode(),
    )


def test_the_registry_builds_clients_and_refuses_bad_keys(tmp_path: Path) -> None:
    providers = {
        "github": {"client_id": "a", "client_secret": "b"},
        "work-sso": {"issuer": "https://sso.example", "client_id": "c", "client_secret": "d"},
    }
    url = "sqlite+aiosqlite:///" + str(tmp_path / "x.db")
    settings = make_settings(tmp_path, url, oauth_providers=providers)
    keys = load_key_material(settings)
    registry = ProviderRegistry(settings, keys)
    assert registry.get("work-sso").display_name == "Work Sso"
    assert registry.get("github").display_name == "GitHub"
    with pytest.raises(NotFound):
        registry.get("google")
    assert registry.callback_url("github", "http://local:8000/") == (
        "http://local:8000/api/v1/auth/github/callback"
    )
    bad = make_settings(
        tmp_path, url, oauth_providers=providers, token_encryption_keys="not-a-fernet-key"
    )
    with pytest.raises(ConfigurationError, match="Fernet"):
        ProviderRegistry(bad, keys)


def test_token_encryption_rotates_with_a_key_list() -> None:
    old, new = Fernet.generate_key(), Fernet.generate_key()
    before = TokenCipher([old])
    stored = before.encrypt("gho_provider_token")
    assert "gho_provider_token" not in stored
    after = TokenCipher([new, old])  # a new key first; the old one still decrypts
    assert after.decrypt(stored) == "gho_provider_token"
    rotated = after.rotate(stored)
    assert TokenCipher([new]).decrypt(rotated) == "gho_provider_token"
    with pytest.raises(ValueError, match="decrypt"):
        TokenCipher([new]).decrypt(stored)
    derived = TokenCipher.from_secret(b"x" * 48)
    assert TokenCipher.from_secret(b"x" * 48).decrypt(derived.encrypt("t")) == "t"


def test_the_state_cookie_is_signed_expiring_and_per_provider() -> None:
    cookie = StateCookie(b"s" * 48)
    value = cookie.issue("the-state", "google")
    assert cookie.state_from(value, "google") == "the-state"
    with pytest.raises(BadRequest, match="another provider"):
        cookie.state_from(value, "github")
    with pytest.raises(BadRequest, match="invalid or expired"):
        StateCookie(b"t" * 48).state_from(value, "google")  # another app secret
    with pytest.raises(BadRequest, match="missing"):
        cookie.state_from(None, "google")
    expired = StateCookie(b"s" * 48, ttl_seconds=-1).issue("the-state", "google")
    with pytest.raises(BadRequest, match="invalid or expired"):
        cookie.state_from(expired, "google")
    assert cookie.ttl_seconds == 600


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("octocat", "octocat"),
        ("The-Octocat", "The_Octocat"),
        ("Zoë O'Brien", "Zoe_O_Brien"),
        ("jo", None),
        ("__", None),
        ("名前", None),
        ("a" * 40, "a" * 30),
        ("x.y.z@", "x_y_z"),
    ],
)
def test_usernames_are_sanitised(raw: str, expected: str | None) -> None:
    assert sanitise(raw) == expected


def test_a_base_username_falls_back_through_the_hints() -> None:
    assert base_username(["名前", "Jane Doe"], "jd@example.com") == "Jane_Doe"
    assert base_username([], "jane.doe@example.com") == "jane_doe"
    assert base_username([], None) == "user"


async def test_usernames_are_unique_and_not_reserved() -> None:
    taken = {"jane", "jane2", "user"}

    async def is_taken(name: str) -> bool:
        return name.lower() in taken

    assert await unique_username(["Jane"], None, is_taken) == "Jane3"
    assert await unique_username(["admin"], None, is_taken) == "admin2"
    assert await unique_username(["b" * 30], None, is_taken) == "b" * 30
    taken.add("b" * 30)
    assert await unique_username(["b" * 30], None, is_taken) == "b" * 29 + "2"
    assert await unique_username([], None, is_taken) == "user2"


def test_github_email_choice() -> None:
    def entry(email: str, primary: bool, verified: bool) -> dict[str, object]:
        return {"email": email, "primary": primary, "verified": verified, "visibility": None}

    assert pick_email([entry("a@x", True, True), entry("b@x", False, True)]) == ("a@x", True)
    assert pick_email([entry("a@x", True, False), entry("b@x", False, True)]) == ("b@x", True)
    assert pick_email([entry("a@x", True, False), entry("b@x", False, False)]) == ("a@x", False)
    assert pick_email([]) == (None, False)
    assert pick_email([{"message": "nope"}, "junk"]) == (None, False)


def test_codes_are_added_to_the_redirect_uri_query() -> None:
    assert with_query("https://a.example/cb", code="c1") == "https://a.example/cb?code=c1"
    assert with_query("https://a.example/cb?t=1", code="c", state=None) == (
        "https://a.example/cb?t=1&code=c"
    )
    assert with_query("myapp:/oauth", code="c", state="s 1") == "myapp:/oauth?code=c&state=s+1"
