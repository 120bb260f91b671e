"""Settings from the environment, and the key material they lead to (dev files, prod refusals)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from joserfc.jwk import KeySet
from pydantic import ValidationError

from tidings.core.errors import ConfigurationError
from tidings.core.keys import (
    MIN_SECRET_LENGTH,
    load_key_material,
    new_signing_key,
    rotate_signing_keys,
    signing_keys_path,
)
from tidings.settings import PLACEHOLDER_SECRETS, Settings

GOOD_SECRET = "q" * 8 + "7Hk2-vX9_pLm3Nz4Rt6Wy8Bc0Df5Gh1J"  # 40 characters, not a placeholder


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings read TIDINGS_* variables: none from the caller's shell may leak in."""
    for name in list(os.environ):
        if name.startswith("TIDINGS_"):
            monkeypatch.delenv(name)


def _private_jwks() -> str:
    """What `tidings keys generate` prints."""
    return json.dumps(KeySet([new_signing_key()]).as_dict(private=True))


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _kids(path: Path) -> list[str]:
    return [key["kid"] for key in json.loads(path.read_text())["keys"]]


# --- development -------------------------------------------------------------------------------


def test_development_generates_private_files_and_reuses_them(tmp_path: Path) -> None:
    data_dir = tmp_path / "nested" / "data"  # created on demand
    settings = Settings(env="development", data_dir=data_dir)
    first = load_key_material(settings)

    secret_file = data_dir / "secret.key"
    keys_file = data_dir / "signing-keys.json"
    assert secret_file.is_file()
    assert keys_file.is_file()
    assert _mode(secret_file) == 0o600
    assert _mode(keys_file) == 0o600
    assert len(first.secret_key) >= MIN_SECRET_LENGTH
    assert first.secret_key == secret_file.read_text().strip().encode()
    assert _kids(keys_file) == [first.active_kid]
    key = json.loads(keys_file.read_text())["keys"][0]
    assert key["kty"] == "OKP"
    assert key["crv"] == "Ed25519"
    assert "d" in key  # the private part is on disk, for signing

    secret_before, keys_before = secret_file.read_text(), keys_file.read_text()
    second = load_key_material(Settings(env="development", data_dir=data_dir))
    assert second.secret_key == first.secret_key
    assert second.active_kid == first.active_kid
    assert secret_file.read_text() == secret_before
    assert keys_file.read_text() == keys_before


def test_development_public_jwks_has_no_private_part(tmp_path: Path) -> None:
    material = load_key_material(Settings(env="development", data_dir=tmp_path))
    public = material.public_jwks()
    assert [k["kid"] for k in public["keys"]] == [material.active_kid]
    assert all("d" not in k for k in public["keys"])


def test_development_uses_a_given_secret_and_keys_file(tmp_path: Path) -> None:
    keys_file = tmp_path / "elsewhere" / "keys.json"
    settings = Settings(
        env="development", data_dir=tmp_path / "data", secret_key="dev", signing_keys_file=keys_file
    )
    material = load_key_material(settings)
    assert material.secret_key == b"dev"  # development does not police the secret
    assert keys_file.is_file()
    assert _mode(keys_file) == 0o600
    assert not (tmp_path / "data" / "secret.key").exists()
    assert not (tmp_path / "data" / "signing-keys.json").exists()
    assert signing_keys_path(settings) == keys_file


# --- production --------------------------------------------------------------------------------


def test_production_without_secret_refuses(tmp_path: Path) -> None:
    settings = Settings(env="production", data_dir=tmp_path, signing_keys=_private_jwks())
    with pytest.raises(ConfigurationError, match="TIDINGS_SECRET_KEY"):
        load_key_material(settings)
    assert list(tmp_path.iterdir()) == []  # nothing generated in production


@pytest.mark.parametrize(
    "secret",
    [
        "changeme",
        "CHANGEME",
        "  changeme  ",
        "secret",
        "placeholder",
        "",
        "x" * (MIN_SECRET_LENGTH - 1),
        "short",
    ],
)
def test_production_with_placeholder_or_short_secret_refuses(tmp_path: Path, secret: str) -> None:
    settings = Settings(
        env="production", data_dir=tmp_path, secret_key=secret, signing_keys=_private_jwks()
    )
    with pytest.raises(ConfigurationError, match="at least 32"):
        load_key_material(settings)


def test_every_placeholder_is_refused(tmp_path: Path) -> None:
    for placeholder in PLACEHOLDER_SECRETS:
        settings = Settings(
            env="production",
            data_dir=tmp_path,
            secret_key=placeholder,
            signing_keys=_private_jwks(),
        )
        with pytest.raises(ConfigurationError):
            load_key_material(settings)


def test_production_without_signing_keys_refuses(tmp_path: Path) -> None:
    settings = Settings(env="production", data_dir=tmp_path, secret_key=GOOD_SECRET)
    with pytest.raises(ConfigurationError, match="TIDINGS_SIGNING_KEYS"):
        load_key_material(settings)
    assert not (tmp_path / "signing-keys.json").exists()
    assert not (tmp_path / "secret.key").exists()


def test_production_with_secret_and_signing_keys_loads(tmp_path: Path) -> None:
    raw = _private_jwks()
    settings = Settings(
        env="production", data_dir=tmp_path, secret_key=GOOD_SECRET, signing_keys=raw
    )
    material = load_key_material(settings)
    assert material.secret_key == GOOD_SECRET.encode()
    assert material.active_kid == json.loads(raw)["keys"][0]["kid"]
    assert list(tmp_path.iterdir()) == []


def test_production_reads_signing_keys_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = _private_jwks()
    monkeypatch.setenv("TIDINGS_ENV", "production")
    monkeypatch.setenv("TIDINGS_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("TIDINGS_SECRET_KEY", GOOD_SECRET)
    monkeypatch.setenv("TIDINGS_SIGNING_KEYS", raw)
    settings = Settings()
    assert settings.is_production
    assert settings.signing_keys is not None
    assert raw not in repr(settings)  # secrets are masked
    assert GOOD_SECRET not in repr(settings)
    assert load_key_material(settings).active_kid == json.loads(raw)["keys"][0]["kid"]


def test_production_reads_a_mounted_signing_keys_file(tmp_path: Path) -> None:
    keys_file = tmp_path / "mounted.json"
    keys_file.write_text(_private_jwks())
    settings = Settings(
        env="production",
        data_dir=tmp_path / "data",
        secret_key=GOOD_SECRET,
        signing_keys_file=keys_file,
    )
    assert load_key_material(settings).active_kid == _kids(keys_file)[0]


def test_public_only_key_set_is_refused(tmp_path: Path) -> None:
    public = json.dumps(KeySet([new_signing_key()]).as_dict(private=False))
    settings = Settings(
        env="production", data_dir=tmp_path, secret_key=GOOD_SECRET, signing_keys=public
    )
    with pytest.raises(ConfigurationError, match="private"):
        load_key_material(settings)


@pytest.mark.parametrize("raw", ["not json", "{}", "[]", '{"keys": 5}x'])
def test_unparseable_key_set_is_refused(tmp_path: Path, raw: str) -> None:
    settings = Settings(
        env="production", data_dir=tmp_path, secret_key=GOOD_SECRET, signing_keys=raw
    )
    with pytest.raises(ConfigurationError, match="TIDINGS_SIGNING_KEYS"):
        load_key_material(settings)


# --- settings parsing --------------------------------------------------------------------------


def test_cors_origins_from_a_comma_separated_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIDINGS_CORS_ORIGINS", "a, b")
    assert Settings().cors_origins == ["a", "b"]
    monkeypatch.setenv("TIDINGS_CORS_ORIGINS", " https://app.example ,,http://localhost:3000 , ")
    assert Settings().cors_origins == ["https://app.example", "http://localhost:3000"]
    monkeypatch.setenv("TIDINGS_CORS_ORIGINS", "")
    assert Settings().cors_origins == []
    monkeypatch.delenv("TIDINGS_CORS_ORIGINS")
    assert Settings().cors_origins == []


def test_effective_database_url_defaults_to_sqlite_in_data_dir(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    assert settings.effective_database_url == f"sqlite+aiosqlite:///{tmp_path / 'tidings.db'}"
    pg = "postgresql+asyncpg://u:p@db/tidings"
    assert Settings(data_dir=tmp_path, database_url=pg).effective_database_url == pg


def test_environment_dependent_defaults(tmp_path: Path) -> None:
    dev = Settings(data_dir=tmp_path)
    assert dev.env == "development"
    assert not dev.is_production
    assert dev.should_auto_migrate
    assert dev.effective_log_format == "console"
    prod = Settings(env="production", data_dir=tmp_path)
    assert not prod.should_auto_migrate
    assert prod.effective_log_format == "json"
    assert Settings(env="production", auto_migrate=True).should_auto_migrate
    assert Settings(log_format="json").effective_log_format == "json"


def test_invalid_values_are_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in [
        ("TIDINGS_ENV", "staging"),
        ("TIDINGS_NODE_ID", "1024"),
        ("TIDINGS_ACCESS_TOKEN_TTL_SECONDS", "5"),
        ("TIDINGS_MAX_BODY_BYTES", "10"),
        ("TIDINGS_LOG_LEVEL", "LOUD"),
    ]:
        monkeypatch.setenv(name, value)
        with pytest.raises(ValidationError):
            Settings()
        monkeypatch.delenv(name)


def test_settings_are_frozen(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    with pytest.raises(ValidationError):
        settings.env = "production"  # type: ignore[misc]


# --- rotation ----------------------------------------------------------------------------------


def test_rotate_puts_a_new_kid_first_and_keeps_old_ones(tmp_path: Path) -> None:
    settings = Settings(env="development", data_dir=tmp_path)
    original = load_key_material(settings).active_kid
    keys_file = tmp_path / "signing-keys.json"

    second = rotate_signing_keys(settings)
    assert second != original
    assert _kids(keys_file) == [second, original]
    assert _mode(keys_file) == 0o600

    reloaded = load_key_material(settings)
    assert reloaded.active_kid == second
    assert [k.kid for k in reloaded.signing_keys.keys] == [second, original]

    third = rotate_signing_keys(settings)
    fourth = rotate_signing_keys(settings)  # keep=3 by default: the original drops out
    assert _kids(keys_file) == [fourth, third, second]
    assert len({original, second, third, fourth}) == 4


def test_rotate_keep_two(tmp_path: Path) -> None:
    settings = Settings(env="development", data_dir=tmp_path)
    first = rotate_signing_keys(settings)  # no file yet: starts a key set
    assert _kids(tmp_path / "signing-keys.json") == [first]
    second = rotate_signing_keys(settings, keep=2)
    third = rotate_signing_keys(settings, keep=2)
    assert _kids(tmp_path / "signing-keys.json") == [third, second]


# --- the row cache -----------------------------------------------------------------------------


def test_the_row_cache_default_is_memory_only_for_the_embedded_default(tmp_path: Path) -> None:
    embedded = Settings(data_dir=tmp_path)
    assert (embedded.row_cache, embedded.effective_row_cache) == ("auto", "memory")
    pg = Settings(data_dir=tmp_path, database_url="postgresql+asyncpg://u@h/db")
    assert pg.effective_row_cache == "none"
    separate_worker = Settings(data_dir=tmp_path, broker="redis")
    assert separate_worker.effective_row_cache == "none"
    assert Settings(data_dir=tmp_path, row_cache="redis").effective_row_cache == "redis"


def test_an_in_memory_row_cache_with_a_separate_worker_is_refused(tmp_path: Path) -> None:
    """Its evictions reach only its own process; a separate worker is another writer."""
    with pytest.raises(ValidationError, match="TIDINGS_ROW_CACHE=memory serves one process"):
        Settings(data_dir=tmp_path, row_cache="memory", broker="redis")
    with pytest.raises(ValidationError, match="TIDINGS_ROW_CACHE=memory"):
        Settings(data_dir=tmp_path, row_cache="memory", relay_in_api=False)
    assert Settings(data_dir=tmp_path, row_cache="memory").effective_row_cache == "memory"


# --- mail ----------------------------------------------------------------------------------------


def test_mail_is_logged_in_development_and_off_in_production_by_default(tmp_path: Path) -> None:
    assert Settings(data_dir=tmp_path).effective_mail_backend == "log"
    assert Settings(env="production", data_dir=tmp_path).effective_mail_backend == "disabled"
    smtp = Settings(env="production", data_dir=tmp_path, mail_backend="smtp")
    assert smtp.effective_mail_backend == "smtp"


def test_production_refuses_mail_to_files_and_plain_http_links(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="TIDINGS_MAIL_BACKEND=log"):
        Settings(env="production", data_dir=tmp_path, mail_backend="log")
    with pytest.raises(ValidationError, match="must be https in production"):
        Settings(
            env="production",
            data_dir=tmp_path,
            password_reset_url="http://app.example/reset?token={token}",
        )
    with pytest.raises(ValidationError, match="containing \\{token\\}"):
        Settings(data_dir=tmp_path, email_verification_url="https://app.example/verify")
    ok = Settings(
        env="production",
        data_dir=tmp_path,
        password_reset_url="https://app.example/reset#token={token}",
    )
    assert ok.password_reset_url == "https://app.example/reset#token={token}"
