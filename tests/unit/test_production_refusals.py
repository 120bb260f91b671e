"""Production refuses to start with debug on (secrets are covered in test_settings_and_keys)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from joserfc.jwk import KeySet

from tidings.core.errors import ConfigurationError
from tidings.core.keys import load_key_material, new_signing_key
from tidings.settings import Settings


def _production(tmp_path: Path, **extra: object) -> Settings:
    keys = json.dumps(KeySet([new_signing_key()]).as_dict(private=True))
    values: dict[str, object] = {
        "env": "production",
        "data_dir": tmp_path,
        "secret_key": "s" * 48,
        "signing_keys": keys,
        **extra,
    }
    return Settings(**values)  # type: ignore[arg-type]


def test_production_with_debug_refuses(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="DEBUG"):
        load_key_material(_production(tmp_path, debug=True))


def test_production_without_debug_starts(tmp_path: Path) -> None:
    assert load_key_material(_production(tmp_path)).active_kid
