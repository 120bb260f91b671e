"""Access-token verification: a token verified once is remembered, never past its expiry, and
never across a change of keys."""

from __future__ import annotations

import time

import pytest
from joserfc.jwk import KeySet

from tidings.core import security
from tidings.core.keys import KeyMaterial, new_signing_key
from tidings.core.security import TokenError, TokenSigner


def _signer(ttl: int = 60) -> TokenSigner:
    keys = KeyMaterial(secret_key=b"s" * 32, signing_keys=KeySet([new_signing_key()]))
    return TokenSigner(keys, issuer="tidings", audience="tidings-api", ttl_seconds=ttl)


def test_a_verified_token_is_remembered_until_it_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    signer = _signer(ttl=60)
    token = signer.issue(7, 9)
    calls: list[str] = []
    verify = signer._verify

    def counting(t: str) -> security.AccessClaims:
        calls.append(t)
        return verify(t)

    monkeypatch.setattr(signer, "_verify", counting)
    first = signer.verify(token)
    assert (first.subject, first.session_id) == (7, 9)
    assert signer.verify(token) == first
    assert calls == [token]  # checked once
    now = time.time()
    monkeypatch.setattr(security.time, "time", lambda: now + 60 + security.CLAIMS_LEEWAY_SECONDS)
    with pytest.raises(TokenError):
        signer.verify(token)


def test_a_tampered_token_is_not_taken_for_a_remembered_one() -> None:
    signer = _signer()
    token = signer.issue(7, 9)
    signer.verify(token)
    head, body, signature = token.split(".")
    forged = f"{head}.{body}.{signature[:-2]}{'AA' if signature[-2:] != 'AA' else 'BA'}"
    with pytest.raises(TokenError):
        signer.verify(forged)


def test_new_keys_forget_what_the_old_ones_verified() -> None:
    signer = _signer()
    token = signer.issue(7, 9)
    signer.verify(token)
    signer.keys = KeyMaterial(secret_key=b"t" * 32, signing_keys=KeySet([new_signing_key()]))
    with pytest.raises(TokenError):
        signer.verify(token)  # signed by a key that is no longer trusted


def test_the_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(security, "VERIFIED_CACHE_SIZE", 3)
    signer = _signer()
    tokens = [signer.issue(i, i) for i in range(1, 6)]
    for token in tokens:
        signer.verify(token)
    assert list(signer._verified) == tokens[-3:]
