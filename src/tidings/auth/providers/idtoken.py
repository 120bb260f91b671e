"""OpenID Connect ID-token checks: the signature against the provider's JWKS (joserfc), then
the claims (authlib's ``CodeIDToken`` on joserfc's registry): ``iss``, ``aud``, ``exp``, ``iat``,
``nonce``, ``azp`` and, when an access token came with it, ``at_hash``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from authlib.oidc.core import CodeIDToken  # type: ignore[import-untyped]
from joserfc import jwt
from joserfc.errors import (
    ClaimError,
    ExpiredTokenError,
    InvalidKeyIdError,
    JoseError,
    MissingClaimError,
)
from joserfc.jwk import KeySet

# Asymmetric algorithms only: "none" and HMAC (keyed with the client secret) are never accepted.
ASYMMETRIC_ALGORITHMS = (
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "ES256",
    "ES384",
    "ES512",
    "Ed25519",
    "EdDSA",
)
LEEWAY_SECONDS = 60


class InvalidIdToken(Exception):
    """The ID token must not be trusted; ``reason`` says which check failed."""

    def __init__(self, reason: str, *, unknown_key: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.unknown_key = unknown_key  # signed with a key not (yet) in our copy of the JWKS


def allowed_algorithms(advertised: Sequence[str] | None) -> list[str]:
    """The provider's advertised ID-token algorithms that we accept (RS256 when it says none)."""
    offered = list(advertised) if advertised else ["RS256"]
    return [alg for alg in offered if alg in ASYMMETRIC_ALGORITHMS]


def validate_id_token(
    token: str,
    keys: KeySet,
    *,
    issuers: Sequence[str],
    client_id: str,
    nonce: str,
    algorithms: Sequence[str],
    trusted_audiences: Sequence[str] = (),
    access_token: str | None = None,
    now: int | None = None,
) -> dict[str, Any]:
    """The verified claims of ``token``; raises :class:`InvalidIdToken` otherwise."""
    if not algorithms:
        raise InvalidIdToken("the provider signs ID tokens with no algorithm we accept")
    try:
        decoded = jwt.decode(token, keys, algorithms=list(algorithms))
    except InvalidKeyIdError as exc:
        raise InvalidIdToken("signature: unknown signing key", unknown_key=True) from exc
    except JoseError as exc:
        raise InvalidIdToken(f"signature: {exc.error}") from exc
    except (ValueError, TypeError, UnicodeError) as exc:
        raise InvalidIdToken("malformed") from exc
    options = {
        "iss": {"essential": True, "values": list(issuers)},
        "aud": {"essential": True, "value": client_id},
        "sub": {"essential": True},
        "exp": {"essential": True},
        "iat": {"essential": True},
        "nonce": {"essential": True, "value": nonce},
    }
    params = {"nonce": nonce, "client_id": client_id, "access_token": access_token}
    claims = CodeIDToken(decoded.claims, decoded.header, options=options, params=params)
    try:
        claims.validate(now=now, leeway=LEEWAY_SECONDS)
    except ExpiredTokenError as exc:
        raise InvalidIdToken("expired") from exc
    except MissingClaimError as exc:
        raise InvalidIdToken(f"missing claim: {exc.claim}") from exc
    except ClaimError as exc:
        raise InvalidIdToken(f"invalid claim: {exc.claim}") from exc
    except JoseError as exc:
        raise InvalidIdToken(f"{exc.error}: {exc.description}") from exc
    _check_audiences(decoded.claims, client_id, trusted_audiences)
    return dict(decoded.claims)


def _check_audiences(claims: dict[str, Any], client_id: str, trusted: Sequence[str]) -> None:
    """OIDC Core 3.1.3.7: we must be an audience; any other audience must be one we trust, and
    with several audiences ``azp`` must be present and name us. A present ``azp`` always must."""
    aud = claims.get("aud")
    audiences = aud if isinstance(aud, list) else [aud]
    if client_id not in audiences:
        raise InvalidIdToken("invalid claim: aud")
    if any(a != client_id and a not in trusted for a in audiences):
        raise InvalidIdToken("invalid claim: aud (an audience we do not trust)")
    if len(audiences) > 1 and "azp" not in claims:
        raise InvalidIdToken("missing claim: azp (required with several audiences)")
    if "azp" in claims and claims["azp"] != client_id:
        raise InvalidIdToken("invalid claim: azp")
