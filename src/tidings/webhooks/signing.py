"""Signing secrets: generated in the Standard Webhooks format, encrypted at rest, and used to
sign each attempt (``webhook-id``, ``webhook-timestamp``, ``webhook-signature``)."""

from __future__ import annotations

import base64
import secrets
from collections.abc import Sequence
from datetime import datetime

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from standardwebhooks.webhooks import Webhook

from tidings.core.errors import ConfigurationError
from tidings.settings import Settings

SECRET_PREFIX = "whsec_"  # noqa: S105 (the format prefix, not a secret)
SECRET_BYTES = 32
_HKDF_INFO = b"tidings webhook secret encryption"


def new_secret() -> str:
    """A fresh ``whsec_<base64>`` secret (32 random bytes)."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii")


def _derived_key(secret_key: bytes) -> bytes:
    raw = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_HKDF_INFO).derive(secret_key)
    return base64.urlsafe_b64encode(raw)


class SecretCipher:
    """Fernet at rest. ``TIDINGS_WEBHOOK_ENCRYPTION_KEYS`` (comma-separated Fernet keys, the first
    encrypts) when set; a key derived from the app secret otherwise, which always still decrypts
    so that configuring keys later needs no migration."""

    def __init__(self, keys: Sequence[bytes]) -> None:
        try:
            self._fernet = MultiFernet([Fernet(key) for key in keys])
        except (ValueError, TypeError) as exc:
            raise ConfigurationError(
                "TIDINGS_WEBHOOK_ENCRYPTION_KEYS must be comma-separated Fernet keys (generate "
                "one with: python -c 'from cryptography.fernet import Fernet; "
                "print(Fernet.generate_key().decode())')"
            ) from exc

    @classmethod
    def from_settings(cls, settings: Settings, secret_key: bytes) -> SecretCipher:
        configured: list[bytes] = []
        if settings.webhook_encryption_keys is not None:
            raw = settings.webhook_encryption_keys.get_secret_value()
            configured = [k.strip().encode() for k in raw.split(",") if k.strip()]
        return cls([*configured, _derived_key(secret_key)])

    def encrypt(self, value: str) -> str:
        return self._fernet.encrypt(value.encode()).decode("ascii")

    def decrypt(self, value: str) -> str:
        try:
            return self._fernet.decrypt(value.encode("ascii")).decode()
        except (InvalidToken, UnicodeError) as exc:
            raise ValueError("no configured key opens this webhook secret") from exc


def message_id(event_id: int) -> str:
    """Stable across retries and redeliveries, so receivers can drop duplicates."""
    return f"msg_{event_id}"


def signed_headers(
    msg_id: str, timestamp: datetime, body: str, signing_secrets: Sequence[str]
) -> dict[str, str]:
    """The Standard Webhooks headers; one ``v1,<sig>`` per secret, space-separated."""
    if not signing_secrets:
        raise ValueError("no secret to sign with")
    signatures = " ".join(Webhook(s).sign(msg_id, timestamp, body) for s in signing_secrets)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(timestamp.timestamp())),
        "webhook-signature": signatures,
    }
