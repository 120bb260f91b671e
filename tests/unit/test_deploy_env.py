"""deploy/production.env.example is a working production configuration: every name in it is a
setting (a typo would be ignored silently), and with its placeholders filled the settings
validate in production mode and the key material loads."""

from __future__ import annotations

import json
import os
import re
import secrets
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from joserfc.jwk import KeySet

from tidings.core.keys import load_key_material, new_signing_key
from tidings.settings import Settings

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "production.env.example"
PLACEHOLDER = re.compile(r"<([a-z ]+)>")


def _entries() -> dict[str, str]:
    """NAME=value lines as systemd's EnvironmentFile reads this file (no quotes used)."""
    entries: dict[str, str] = {}
    for line in EXAMPLE.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, sep, value = line.partition("=")
        assert sep, f"not NAME=value: {line!r}"
        assert name == name.strip(), f"spaces around a name: {line!r}"
        assert name.isupper(), f"not a variable name: {line!r}"
        assert " #" not in value, f"a comment after a value ends up in it: {line!r}"
        assert '"' not in value, f"quotes are read differently: {line!r}"
        assert "'" not in value, f"quotes are read differently: {line!r}"
        entries[name] = value
    return entries


def test_every_name_is_a_setting() -> None:
    fields = set(Settings.model_fields)
    unknown = [n for n in _entries() if n[len("TIDINGS_") :].lower() not in fields]
    assert all(n.startswith("TIDINGS_") for n in _entries())
    assert unknown == []


def test_filled_in_it_is_a_valid_production_configuration(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = tmp_path / "signing-keys.json"
    keys.write_text(json.dumps(KeySet([new_signing_key()]).as_dict(private=True)))
    fills = {
        "db password": "db-password",
        "secret key": secrets.token_urlsafe(48),
        "signing keys file": str(keys),
        "fernet key": Fernet.generate_key().decode(),
        "metrics token": secrets.token_urlsafe(32),
        "smtp password": "smtp-password",
    }
    entries = _entries()
    found = {p for value in entries.values() for p in PLACEHOLDER.findall(value)}
    assert found == set(fills), found
    for name in [n for n in os.environ if n.startswith("TIDINGS_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("TIDINGS_DATA_DIR", str(tmp_path / "data"))
    for name, value in entries.items():
        monkeypatch.setenv(name, PLACEHOLDER.sub(lambda m: fills[m.group(1)], value))

    settings = Settings()
    assert settings.is_production
    assert settings.should_auto_migrate is False
    assert settings.effective_row_cache == "redis"
    assert settings.broker == "redis"
    assert not settings.runs_relay_in_api
    assert settings.effective_mail_backend == "smtp"
    assert settings.mail_from == "Tidings <no-reply@example.com>"
    material = load_key_material(settings)
    assert material.signing_keys.keys
