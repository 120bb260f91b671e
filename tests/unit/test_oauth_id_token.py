"""The ID-token validator, with tokens signed here by joserfc: every check can fail."""

from __future__ import annotations

import time
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import KeySet, OctKey, RSAKey

from tidings.auth.providers.idtoken import (
    InvalidIdToken,
    allowed_algorithms,
    validate_id_token,
)

ISSUER = "https://issuer.example"
CLIENT = "tidings-client"
NONCE = "n-0S6_WzA2Mj"
KEY = RSAKey.generate_key(2048, parameters={"kid": "k1"})
KEYS = KeySet.import_key_set({"keys": [KEY.as_dict(private=False)]})


def claims(**changes: Any) -> dict[str, Any]:
    now = int(time.time())
    values: dict[str, Any] = {
        "iss": ISSUER,
        "sub": "248289761001",
        "aud": CLIENT,
        "exp": now + 300,
        "iat": now,
        "nonce": NONCE,
        "email": "jane@example.com",
        "email_verified": True,
    }
    values.update(changes)
    return {k: v for k, v in values.items() if v is not None}


def sign(payload: dict[str, Any], key: Any = KEY, alg: str = "RS256", kid: str = "k1") -> str:
    return jwt.encode({"alg": alg, "kid": kid}, payload, key, algorithms=[alg])


def check(token: str, **overrides: Any) -> dict[str, Any]:
    options: dict[str, Any] = {
        "issuers": [ISSUER],
        "client_id": CLIENT,
        "nonce": NONCE,
        "algorithms": ["RS256"],
    }
    options.update(overrides)
    return validate_id_token(token, KEYS, **options)


def refused(token: str, **overrides: Any) -> str:
    with pytest.raises(InvalidIdToken) as caught:
        check(token, **overrides)
    return caught.value.reason


def test_a_good_token_passes() -> None:
    verified = check(sign(claims()))
    assert verified["sub"] == "248289761001"
    assert verified["email_verified"] is True


def test_a_wrong_nonce_is_refused() -> None:
    assert "nonce" in refused(sign(claims(nonce="another")))
    assert "nonce" in refused(sign(claims(nonce=None)))


def test_a_wrong_audience_is_refused() -> None:
    assert "aud" in refused(sign(claims(aud="someone-else")))
    assert "aud" in refused(sign(claims(aud=["someone-else", "and-another"])))


def test_several_audiences_need_azp_naming_us_and_trusted_others() -> None:
    both = ["tidings-client", "tidings-android"]
    assert "aud" in refused(sign(claims(aud=both, azp=CLIENT)))  # tidings-android not trusted
    assert "azp" in refused(sign(claims(aud=both)), trusted_audiences=["tidings-android"])
    wrong_azp = sign(claims(aud=both, azp="tidings-android"))
    assert "azp" in refused(wrong_azp, trusted_audiences=["tidings-android"])
    good = sign(claims(aud=both, azp=CLIENT))
    assert check(good, trusted_audiences=["tidings-android"])["aud"] == both
    assert "azp" in refused(sign(claims(azp="tidings-android")))


def test_a_wrong_issuer_is_refused() -> None:
    assert "iss" in refused(sign(claims(iss="https://evil.example")))
    assert "iss" in refused(sign(claims(iss=None)))


def test_google_issuer_without_scheme_is_accepted_when_listed() -> None:
    token = sign(claims(iss="accounts.google.com"))
    assert check(token, issuers=["https://accounts.google.com", "accounts.google.com"])


def test_an_expired_token_is_refused() -> None:
    now = int(time.time())
    assert refused(sign(claims(exp=now - 120, iat=now - 600))) == "expired"
    assert "exp" in refused(sign(claims(exp=None)))
    assert "iat" in refused(sign(claims(iat=now + 3600)))  # issued in the future


def test_a_re_signed_token_is_refused() -> None:
    impostor = RSAKey.generate_key(2048, parameters={"kid": "k1"})  # same kid, another key
    assert "signature" in refused(sign(claims(), key=impostor))
    header, _payload, signature = sign(claims()).split(".")
    tampered_payload = sign(claims(sub="admin")).split(".")[1]
    assert "signature" in refused(f"{header}.{tampered_payload}.{signature}")


def test_an_unknown_key_is_reported_for_a_jwks_refresh() -> None:
    other = RSAKey.generate_key(2048, parameters={"kid": "k2"})
    with pytest.raises(InvalidIdToken) as caught:
        check(sign(claims(), key=other, kid="k2"))
    assert caught.value.unknown_key


def test_none_and_hmac_algorithms_are_never_accepted() -> None:
    assert allowed_algorithms(["none", "HS256", "RS256"]) == ["RS256"]
    assert allowed_algorithms(None) == ["RS256"]
    secret = OctKey.import_key(b"s" * 32)
    hmac_token = sign(claims(), key=secret, alg="HS256")
    assert "signature" in refused(hmac_token)
    header = "eyJhbGciOiJub25lIn0"  # {"alg":"none"}
    unsigned = f"{header}.{sign(claims()).split('.')[1]}."
    assert refused(unsigned)
    assert "algorithm" in refused(sign(claims()), algorithms=[])


def test_at_hash_must_match_the_access_token() -> None:
    from authlib.oidc.core.util import create_half_hash  # type: ignore[import-untyped]

    at_hash = create_half_hash("the-access-token", "RS256").decode()
    token = sign(claims(at_hash=at_hash))
    assert check(token, access_token="the-access-token")
    assert "at_hash" in refused(token, access_token="another-access-token")


def test_garbage_is_refused() -> None:
    assert refused("not.a.jwt")
    assert refused("")
