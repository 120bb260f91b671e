"""Key material: the app secret and the token-signing key set.

In development both are generated into the data directory on first run (mode 0600). In
production they must come from the environment (or a mounted file), and the service refuses to
start with a missing or placeholder secret.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from joserfc.errors import JoseError
from joserfc.jwk import KeySet, OKPKey

from tidings.core.errors import ConfigurationError
from tidings.settings import PLACEHOLDER_SECRETS, Settings

MIN_SECRET_LENGTH = 32


@dataclass(frozen=True)
class KeyMaterial:
    secret_key: bytes
    signing_keys: KeySet  # first key signs, every key verifies

    @property
    def active_kid(self) -> str:
        kid = self.signing_keys.keys[0].kid
        assert kid is not None
        return kid

    def public_jwks(self) -> dict[str, Any]:
        return dict(self.signing_keys.as_dict(private=False))


def new_signing_key() -> OKPKey:
    kid = f"{int(time.time())}-{secrets.token_hex(4)}"
    return OKPKey.generate_key("Ed25519", parameters={"kid": kid, "use": "sig", "alg": "Ed25519"})


def _write_private(path: Path, content: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(content)


def _check_secret(value: str) -> None:
    if value.strip().lower() in PLACEHOLDER_SECRETS or len(value) < MIN_SECRET_LENGTH:
        raise ConfigurationError(
            f"TIDINGS_SECRET_KEY must be a random string of at least {MIN_SECRET_LENGTH} "
            "characters (try: python -c 'import secrets; print(secrets.token_urlsafe(48))')"
        )


def _parse_keyset(raw: str, origin: str) -> KeySet:
    try:
        keyset = KeySet.import_key_set(json.loads(raw))
    except (ValueError, KeyError, TypeError, JoseError) as exc:
        raise ConfigurationError(f"{origin} is not a valid private JWK set: {exc}") from exc
    if not keyset.keys:
        raise ConfigurationError(f"{origin} holds no keys")
    for key in keyset.keys:
        if not isinstance(key, OKPKey) or key.as_dict().get("crv") != "Ed25519":
            raise ConfigurationError(f"{origin} may only hold Ed25519 (OKP) keys")
        if not key.is_private or key.kid is None:
            raise ConfigurationError(f"{origin} must hold private keys, each with a kid")
    return keyset


def signing_keys_path(settings: Settings) -> Path:
    return settings.signing_keys_file or settings.data_dir / "signing-keys.json"


def _load_signing_keys(settings: Settings) -> KeySet:
    if settings.signing_keys is not None:
        return _parse_keyset(settings.signing_keys.get_secret_value(), "TIDINGS_SIGNING_KEYS")
    path = signing_keys_path(settings)
    if path.exists():
        return _parse_keyset(path.read_text(), str(path))
    if settings.is_production:
        raise ConfigurationError(
            "No signing keys: set TIDINGS_SIGNING_KEYS or TIDINGS_SIGNING_KEYS_FILE "
            "(generate one with `tidings keys generate`)"
        )
    keyset = KeySet([new_signing_key()])
    _write_private(path, json.dumps(keyset.as_dict(private=True)))
    return keyset


def _load_secret(settings: Settings) -> bytes:
    if settings.secret_key is not None:
        value = settings.secret_key.get_secret_value()
        if settings.is_production:
            _check_secret(value)
        return value.encode()
    if settings.is_production:
        raise ConfigurationError("TIDINGS_SECRET_KEY is required in production")
    path = settings.data_dir / "secret.key"
    if not path.exists():
        _write_private(path, secrets.token_urlsafe(48))
    return path.read_text().strip().encode()


def load_key_material(settings: Settings) -> KeyMaterial:
    return KeyMaterial(secret_key=_load_secret(settings), signing_keys=_load_signing_keys(settings))


def rotated_keyset(current: list[Any], keep: int = 3) -> KeySet:
    """A new signing key first; older keys stay for verification (up to ``keep`` in all)."""
    return KeySet([new_signing_key(), *current][:keep])


def rotate_signing_keys(settings: Settings, keep: int = 3) -> str:
    """Rotate the key file. Keys given in TIDINGS_SIGNING_KEYS are the operator's to replace:
    the CLI prints the rotated set for them instead of calling this."""
    path = signing_keys_path(settings)
    current = _parse_keyset(path.read_text(), str(path)).keys if path.exists() else []
    keyset = rotated_keyset(list(current), keep)
    _write_private(path, json.dumps(keyset.as_dict(private=True)))
    kid = keyset.keys[0].kid
    assert kid is not None
    return kid
