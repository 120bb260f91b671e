"""Keys for the sign-in flow: Fernet (MultiFernet) for provider tokens and PKCE verifiers at
rest, and an HMAC-signed, expiring cookie that binds a flow's ``state`` to one browser."""

from __future__ import annotations

import base64
import time

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import OctKey

from tidings.core.errors import BadRequest, ConfigurationError

STATE_COOKIE = "tidings_oauth_state"
STATE_TTL_SECONDS = 600
_COOKIE_ALG = "HS256"


def derive_key(secret_key: bytes, purpose: str) -> bytes:
    """32 bytes for one purpose, derived from the app secret (HKDF-SHA256)."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose.encode()).derive(
        secret_key
    )


class TokenCipher:
    """Encrypts with the first key; decrypts with any (rotate by putting a new key first)."""

    def __init__(self, keys: list[bytes]) -> None:
        if not keys:
            raise ConfigurationError("TIDINGS_TOKEN_ENCRYPTION_KEYS holds no key")
        try:
            self._fernet = MultiFernet([Fernet(key) for key in keys])
        except (ValueError, TypeError) as exc:
            raise ConfigurationError(
                "TIDINGS_TOKEN_ENCRYPTION_KEYS must be comma-separated Fernet keys (generate one "
                "with: python -c 'from cryptography.fernet import Fernet; "
                "print(Fernet.generate_key().decode())')"
            ) from exc

    @classmethod
    def from_secret(cls, secret_key: bytes) -> TokenCipher:
        """Development only: one key derived from the app secret."""
        derived = derive_key(secret_key, "tidings provider-token encryption")
        return cls([base64.urlsafe_b64encode(derived)])

    def encrypt(self, value: str) -> str:
        return self._fernet.encrypt(value.encode()).decode("ascii")

    def decrypt(self, value: str) -> str:
        try:
            return self._fernet.decrypt(value.encode("ascii")).decode()
        except (InvalidToken, UnicodeError) as exc:
            raise ValueError("cannot decrypt: no configured key opens this value") from exc

    def rotate(self, value: str) -> str:
        """Re-encrypt under the first key."""
        return self._fernet.rotate(value.encode("ascii")).decode("ascii")


class StateCookie:
    """``{state, provider, exp}`` signed with HMAC-SHA256 (a JWT keyed from the app secret)."""

    def __init__(self, secret_key: bytes, ttl_seconds: int = STATE_TTL_SECONDS) -> None:
        self._key = OctKey.import_key(derive_key(secret_key, "tidings oauth state cookie"))
        self.ttl_seconds = ttl_seconds
        self._claims = jwt.JWTClaimsRegistry(
            leeway=0,
            exp={"essential": True},
            st={"essential": True},
            prv={"essential": True},
        )

    def issue(self, state: str, provider: str) -> str:
        now = int(time.time())
        claims = {"st": state, "prv": provider, "iat": now, "exp": now + self.ttl_seconds}
        return jwt.encode({"alg": _COOKIE_ALG}, claims, self._key, algorithms=[_COOKIE_ALG])

    def state_from(self, cookie: str | None, provider: str) -> str:
        """The state this browser was given for ``provider``; 400 when absent, forged or old."""
        if not cookie:
            raise BadRequest(
                "The sign-in cookie is missing: start again from the authorize URL, in the same "
                "browser, within ten minutes."
            )
        try:
            token = jwt.decode(cookie, self._key, algorithms=[_COOKIE_ALG])
            self._claims.validate(token.claims)
        except (JoseError, ValueError, TypeError, UnicodeError) as exc:
            raise BadRequest("The sign-in cookie is invalid or expired; start again.") from exc
        if token.claims.get("prv") != provider or not isinstance(token.claims.get("st"), str):
            raise BadRequest("The sign-in cookie belongs to another provider; start again.")
        state: str = token.claims["st"]
        return state
